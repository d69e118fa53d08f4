"""Runs an orchestration's main.py as ``__main__`` inside a local task process.

Started as ``python task_bootstrap.py MAIN_PY``. An error orchzip raises on purpose (any
exception class named ``OrchzipError`` in its MRO, whichever copy of the shim raised it, or
an exception the wallaroo stand-in marks ``orchzip_one_line``: it raises the SDK's own kinds,
plain ``Exception`` included) becomes one line on stderr, with the stand-in's
``orchzip_hint`` after it, and exit code 2 instead of a traceback; any other exception is a
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


def _ours(err):
    return getattr(err, "orchzip_one_line", False) is True or any(
        cls.__name__ == "OrchzipError" for cls in type(err).__mro__)


def _one_line(err):
    """``err``'s text, then the stand-in's hint of what to do locally, if any."""
    text, hint = str(err), getattr(err, "orchzip_hint", None)
    if not hint:
        return text
    if text.endswith("."):
        return f"{text} {hint[:1].upper()}{hint[1:]}"
    return f"{text}: {hint}"


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
        if _ours(err):
            sys.stdout.flush()
            sys.stderr.write(f"orchzip: error: {_one_line(err)}\n")
            sys.stderr.flush()
            raise SystemExit(ORCHZIP_ERROR_EXIT) from None
        raise


if __name__ == "__main__":
    main()
