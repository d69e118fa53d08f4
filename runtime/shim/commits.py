"""The commit protocol between a task's sinks and the local runner.

A run's recorded status must match what its sinks did: success if and only if its output
committed, anything else if and only if the output is untouched. How a process ended does not
say that (a kill may land just after a commit), so each sink leaves a durable trail instead:

1. ``opened``    when the sink is created (what it writes: type, path, table; no secrets;
                 and the run's idempotency key);
2. ``prepared``  just before its commit starts;
3. ``committed`` once the commit is durable in the target (``already`` names the run that
                 committed the same idempotency key earlier, when this commit was a no-op),
   or ``failed`` when the commit raised (the target is unchanged).

Each record is one JSON line appended to ``ORCHZIP_COMMITS`` (a file in the run directory)
and fsync'd before the sink goes on. The runner settles the run from this file: every opened
sink committed -> success, whatever signal ended the process; nothing committed -> the output
is untouched. A sink ``prepared`` but neither committed nor failed (killed inside its commit)
is settled from the sink's own ledger, which records each committed idempotency key in the
same transaction as the data (see ``ledger``).

SIGTERM and SIGHUP are deferred while a sink commits and records it (:func:`shielded`), so
only SIGKILL can cut a commit from its record, and the ledger covers that case.
Outside a local run (on Wallaroo) nothing is written.
"""

import contextlib
import itertools
import json
import os
import signal
import threading
import time

__all__ = ["COMMITS_ENV", "KEY_ENV", "idempotency_key", "record", "shielded", "sink_id", "fault_point"]

COMMITS_ENV = "ORCHZIP_COMMITS"
KEY_ENV = "ORCHZIP_IDEMPOTENCY_KEY"
RUN_ENV = "ORCHZIP_RUN_ID"
FAULT_ENV = "ORCHZIP_FAULT"  # test hook: "<point>:kill" or "<point>:pause" (see fault_point)
_DEFERRED_SIGNALS = ("SIGTERM", "SIGHUP", "SIGINT")
_counter = itertools.count(1)
_lock = threading.Lock()


def idempotency_key(explicit=None):
    """The key that names this run's output across retries (None outside a local run).

    :param explicit: a key the caller chose (e.g. a sink's ``idempotency_key=``) wins.
    """
    if explicit:
        return str(explicit)
    return os.environ.get(KEY_ENV) or None


def current_run_id():
    return os.environ.get(RUN_ENV) or None


def sink_id():
    """A name for one sink of this process, unique within the run."""
    return f"{os.getpid()}-{next(_counter)}"


def record(phase, sink, **fields):
    """Append one durable commit record (fsync'd) for ``sink`` (its ``sink_id``)."""
    path = os.environ.get(COMMITS_ENV)
    if not path:
        return
    line = json.dumps(dict(fields, phase=phase, sink=sink, pid=os.getpid(), at=time.time()), default=str)
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def shielded():
    """Defer SIGTERM/SIGHUP/SIGINT for the block (main thread only; elsewhere a no-op).

    A stop request that arrives while a sink commits takes effect right after the commit and
    its record, never between them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {}
    for name in _DEFERRED_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
        except (ValueError, OSError):
            continue
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in pending[:1]:
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def fault_point(point):
    """Fault injection for tests: act at ``point`` when ``ORCHZIP_FAULT`` is ``point:ACTION``.

    Points: ``prepared`` (before a sink's commit), ``swapped`` (a FILE output renamed into
    place, its ledger not yet), ``committed`` (commit done, its record not yet written) and
    ``recorded`` (after the record); and, outside tasks, ``upload-copied`` (``orchzip models
    upload`` has copied the model into its ``.upload-*`` folder, not yet numbered or recorded).
    ``kill`` SIGKILLs this process; ``pause`` says so on
    stderr and sleeps, so that a test can kill the runner, scheduler or server right there.
    """
    wanted = os.environ.get(FAULT_ENV)
    if not wanted or wanted.partition(":")[0] != point:
        return
    action = wanted.partition(":")[2]
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "pause":
        import sys
        sys.stderr.write(f"orchzip-fault: paused at {point}\n")
        sys.stderr.flush()
        time.sleep(3600)
