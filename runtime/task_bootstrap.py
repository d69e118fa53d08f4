"""Runs an orchestration's main.py as ``__main__`` inside a local task process.

Started as ``python task_bootstrap.py MAIN_PY``. An error orchzip raises on purpose (any
exception class named ``OrchzipError`` in its MRO, whichever copy of the shim raised it)
becomes one line on stderr and exit code 2 instead of a traceback; any other exception is a
bug in the task and keeps its traceback. Imports only the standard library: it runs under
the task's own interpreter, which may not have orchzip installed.
"""

import json
import os
import runpy
import sys
import time

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
        raise


if __name__ == "__main__":
    main()
