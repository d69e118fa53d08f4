"""Runs an orchestration's main.py as ``__main__`` inside a local task process.

Started as ``python task_bootstrap.py MAIN_PY``. An error orchzip raises on purpose (any
exception class named ``OrchzipError`` in its MRO, whichever copy of the shim raised it, or
an exception the wallaroo stand-in marks ``orchzip_one_line``: it raises the SDK's own kinds,
plain ``Exception`` included) becomes one line on stderr, with the stand-in's
``orchzip_hint`` after it, and exit code 2 instead of a traceback; any other exception is a
bug in the task and keeps its traceback, from the user's main.py on (the bootstrap's and
runpy's frames cut) with the orchestration's files named as in the orchestration
(``main.py``, ``lib/util.py``), not by the run directory they were unpacked into. Imports only
the standard library: it runs under the task's own interpreter, which may not have orchzip
installed.

Before main.py runs, the bootstrap ties the task's life to its runner's:

- On Linux the task asks the kernel to SIGKILL it when the process that started it dies
  (``prctl(PR_SET_PDEATHSIG)``), so an ``orchzip run`` killed outright never leaves its task
  running on and committing output nobody records. ``ORCHZIP_PARENT_PID`` names the runner;
  if it is already gone the task exits before doing anything.
- SIGTERM and SIGHUP raise :class:`TaskStopped` in main.py, so an open sink aborts (removing
  its temporary files) before the runner's grace period ends. The shim defers them while a
  sink commits, so a commit and its record are never cut apart by these signals.
- The task context (which may hold connection secrets) is moved off the disk into memory at
  once: ``ORCHZIP_CONTEXT`` then names the in-memory copy, which vanishes with the process.
"""

import atexit
import builtins
import gc
import importlib.machinery
import io
import json
import os
import signal
import sys
import threading
import time
import traceback
import types

ORCHZIP_ERROR_EXIT = 2
PR_SET_PDEATHSIG = 1


class TaskStopped(BaseException):
    """The runner asked the task to stop (SIGTERM or SIGHUP)."""


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


def die_with_parent():
    """SIGKILL this process when the runner dies (Linux); exit now if it already has."""
    parent = os.environ.get("ORCHZIP_PARENT_PID")
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the runner's own kill and later reconciliation still apply
    # The runner may have died between starting us and the prctl: then nobody records us.
    if parent and os.getppid() != int(parent):
        sys.stderr.write("orchzip: error: the runner that started this task is gone; not running main.py\n")
        raise SystemExit(ORCHZIP_ERROR_EXIT)


def _stop(signum, frame):
    raise TaskStopped(f"stopped by {signal.Signals(signum).name}")


def context_in_memory():
    """Move the context file into an anonymous in-memory file and delete it from the disk.

    ``ORCHZIP_CONTEXT`` then points at ``/proc/<pid>/fd/<fd>``, readable by this process and
    its children while it lives; a kill leaves no secrets behind in the run directory.
    """
    path = os.environ.get("ORCHZIP_CONTEXT")
    if not path or not hasattr(os, "memfd_create") or not os.path.isdir(f"/proc/{os.getpid()}/fd"):
        return
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        fd = os.memfd_create("orchzip-context")
        os.write(fd, data)
        os.unlink(path)
    except OSError:
        return  # the file stays; the runner deletes it when the run ends
    os.environ["ORCHZIP_CONTEXT"] = f"/proc/{os.getpid()}/fd/{fd}"


def main():
    die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    context_in_memory()
    main_py = os.path.abspath(sys.argv[1])
    sys.argv = [main_py] + sys.argv[2:]
    sys.path.insert(0, os.path.dirname(main_py))
    atexit.register(shorter_shutdown, os.path.dirname(main_py))  # registered first, so it runs last
    _event("main_started")
    try:
        run_as_main(main_py)
        _event("main_ended")
    except BaseException as err:  # noqa: B036 - reclassify, then re-raise what is not ours
        _event("main_ended")
        if _ours(err):
            sys.stdout.flush()
            sys.stderr.write(f"orchzip: error: {_one_line(err)}\n")
            sys.stderr.flush()
            raise SystemExit(ORCHZIP_ERROR_EXIT) from None
        if isinstance(err, TaskStopped):
            sys.stderr.write(f"orchzip: task {err}\n")
            raise SystemExit(128 + signal.SIGTERM) from None
        if isinstance(err, (SystemExit, KeyboardInterrupt)):
            raise
        sys.stdout.flush()
        sys.stderr.write("".join(user_traceback(err, os.path.dirname(main_py))))
        sys.stderr.flush()
        raise SystemExit(1) from None  # what Python exits with for an uncaught exception


def run_as_main(main_py):
    """Run main.py as ``python main.py`` does: in a module that stays ``sys.modules["__main__"]``.

    (runpy.run_path runs it in a module it drops afterwards: main.py's globals then became
    garbage that the exit never finalized, so a file main.py left open lost what it wrote.)
    """
    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=main_py, __cached__=None, __package__=None, __spec__=None,
                           __loader__=importlib.machinery.SourceFileLoader("__main__", main_py),
                           __builtins__=builtins)
    sys.modules["__main__"] = module
    with io.open_code(main_py) as fh:
        code = compile(fh.read(), main_py, "exec")
    exec(code, module.__dict__)


def shorter_shutdown(root):
    """The last atexit handler: clear the orchestration's modules, then freeze every object left.

    The interpreter's exit runs full collections over everything the task imported; with
    google-cloud-bigquery and pandas loaded they took 0.2-0.35 s of a 1.5 s run. Frozen
    objects are skipped by them. First the orchestration's own modules (``__main__`` and those
    under its folder) are cleared as the exit clears modules (names set to None, ``_`` names
    first), so what they hold is finalized as with ``python main.py``: a file main.py left
    open is flushed. Objects kept alive only by reference cycles are not finalized, which
    Python does not promise for objects alive at exit either (and a full collection here
    would cost 70 ms). atexit handlers and the wait for non-daemon threads have run by then.
    While a daemon thread still runs nothing is done: it could see the names gone.
    """
    if threading.active_count() > 1:
        return
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None) or ""
        if name == "__main__" or (where and _inside(where, root)):
            _clear_module(module)
    gc.freeze()


def _clear_module(module):
    namespace = getattr(module, "__dict__", None)
    if not isinstance(namespace, dict):
        return
    for underscored in (True, False):
        for key in list(namespace):
            if key != "__builtins__" and isinstance(key, str) and key.startswith("_") == underscored:
                namespace[key] = None


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
