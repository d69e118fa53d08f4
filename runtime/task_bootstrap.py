"""Runs an orchestration's main.py as ``__main__`` inside a local task process.

Started as ``python task_bootstrap.py MAIN_PY``. An error orchzip raises on purpose (any
exception class named ``OrchzipError`` in its MRO, whichever copy of the shim raised it)
becomes one line on stderr and exit code 2 instead of a traceback; any other exception is a
bug in the task and keeps its traceback, from the user's main.py on (the bootstrap's and
runpy's frames cut) with the orchestration's files named as in the orchestration
(``main.py``, ``lib/util.py``), not by the run directory they were unpacked into. Imports only
the standard library: it runs under the task's own interpreter, which may not have orchzip
installed.
"""

import json
import os
import runpy
import sys
import time
import traceback

ORCHZIP_ERROR_EXIT = 2


def _event(name):
    """Tell the runner when main.py starts and ends, so it can tell its own time from the task's."""
    path = os.environ.get("ORCHZIP_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": name, "at": time.time()}) + "\n")


def main():
    main_py = os.path.abspath(sys.argv[1])
    sys.argv = [main_py] + sys.argv[2:]
    sys.path.insert(0, os.path.dirname(main_py))
    _event("main_started")
    try:
        runpy.run_path(main_py, run_name="__main__")
        _event("main_ended")
    except BaseException as err:  # noqa: B036 - reclassify, then re-raise what is not ours
        _event("main_ended")
        if any(cls.__name__ == "OrchzipError" for cls in type(err).__mro__):
            sys.stdout.flush()
            sys.stderr.write(f"orchzip: error: {err}\n")
            sys.stderr.flush()
            raise SystemExit(ORCHZIP_ERROR_EXIT) from None
        if isinstance(err, (SystemExit, KeyboardInterrupt)):
            raise
        sys.stdout.flush()
        sys.stderr.write("".join(user_traceback(err, os.path.dirname(main_py))))
        sys.stderr.flush()
        raise SystemExit(1) from None  # what Python exits with for an uncaught exception


def user_traceback(err, root):
    """The traceback of ``err`` as the user's code sees it: from the first frame in ``root``."""
    top = traceback.TracebackException.from_exception(err)
    exc, seen = top, set()
    while exc is not None and id(exc) not in seen:  # the exception and those chained to it
        seen.add(id(exc))
        frames = list(exc.stack)
        first = next((i for i, f in enumerate(frames) if _inside(f.filename, root)), 0)
        for frame in frames[first:]:
            if _inside(frame.filename, root):
                frame.filename = os.path.relpath(frame.filename, root)
        exc.stack = traceback.StackSummary.from_list(frames[first:])
        exc = exc.__cause__ or exc.__context__
    return top.format()


def _inside(path, root):
    # "<frozen runpy>" and "<string>" name no file: never the user's, whatever the cwd.
    return not path.startswith("<") and os.path.abspath(path).startswith(root + os.sep)


if __name__ == "__main__":
    main()
