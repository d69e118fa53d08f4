"""What `orchzip run` and `orchzip run --continuously` share: progress, stop signals, the store.

Both commands (run.py, continuous.py) import from here, so neither imports the other's helpers.
"""

import contextlib
import signal
import sys

from orchzip.commands._output import end_line
from orchzip.runtime.task_logs import is_framing


class Progress:
    """Rows and batches on stderr while a run goes, when stderr is a terminal."""

    def __init__(self, enabled):
        self._bar = None
        self._enabled = enabled

    def on_event(self, event):
        if not self._enabled or "rows_read" not in event:
            return
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(unit=" rows", unit_scale=True, file=sys.stderr, leave=False, desc="inferring")
        self._bar.update(event["rows_read"] - self._bar.n)
        self._bar.set_postfix(batches=event.get("batches"), written=event.get("rows_written"), refresh=False)

    def on_output(self, stream, text):
        """The task's stdout to ours, its stderr to ours; Wallaroo's framing lines stay in the log."""
        if is_framing(text):
            return
        end_line()  # a one-line progress of an environment build ends where the task's output starts
        if self._bar is not None:
            self._bar.clear()
        out = sys.stderr if stream == "stderr" else sys.stdout
        out.write(text)
        out.flush()
        if self._bar is not None:
            self._bar.refresh()

    def close(self):
        if self._bar is not None:
            self._bar.close()


def describe_run(run):
    seconds = run_seconds(run)
    text = f"run {run['id']} {run['status']}"
    if seconds is not None:
        text += f" in {seconds:.2f} s"
    if run.get("rows_read") is not None:
        text += (f"; rows read {run['rows_read']}, inferred {run['rows_inferred']}, "
                 f"written {run['rows_written']}")
    return text


def run_seconds(run):
    from datetime import datetime
    if not run.get("started_at") or not run.get("ended_at"):
        return None
    return (datetime.fromisoformat(run["ended_at"]) - datetime.fromisoformat(run["started_at"])).total_seconds()


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP as a request to stop: see :func:`stop_signals_interrupt`."""

    def __init__(self):
        self.reason = None  # e.g. "orchzip run got SIGTERM", once a signal came
        self.deferring = False  # true once a wait loop polls us

    def handle(self, signum, frame):
        if self.reason is not None:
            return  # later signals cannot cut the recording of the first one short
        self.reason = f"orchzip run got {signal.Signals(signum).name}"
        if not self.deferring:
            raise KeyboardInterrupt(self.reason)

    def polled(self, should_stop):
        """``should_stop`` for a run's wait loop: true (the reason) once a signal came, else
        what ``should_stop`` says. Its first call marks the loop as started: from then on a
        signal is only recorded, and the loop kills and records the run at its next poll."""
        def check(*args):
            self.deferring = True
            return self.reason or should_stop(*args)
        return check


@contextlib.contextmanager
def stop_signals_interrupt():
    """SIGINT, SIGTERM and SIGHUP (Ctrl-C, CI cancellation, `timeout`, a closed terminal) stop the run.

    Yields a :class:`StopSignals`. Until a run's wait loop polls its ``polled`` check, the first
    signal raises KeyboardInterrupt at once (an environment build or a zip in the making stops
    there). Once the loop polls it, a signal is only recorded and the loop kills the run, tree
    and all, and records it ``killed`` with the signal's name. Raising inside that loop could
    land while it holds a lock or half-reaps the process (subprocess's own waitpid lock, the
    log's lock), and the kill that follows would then wait for that lock forever.
    """
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    sigs = [getattr(signal, n) for n in names if hasattr(signal, n)]
    stop = StopSignals()
    previous = {sig: signal.signal(sig, stop.handle) for sig in sigs}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def environment_options(args):
    """Per-task environments: built from the zip's requirements.txt unless --no-env."""
    if getattr(args, "no_env", False):
        return {"no_env": True}
    return {"on_env_progress": _show_env_progress}


def _show_env_progress(line):
    from orchzip.commands._output import env_progress
    env_progress(line)


def open_store(args, create=True):
    """The store, with runs (and continuous tasks) whose `orchzip run` died unrecorded settled first.

    :param create: False for commands that only read: a missing state reads as empty and is
        not created.
    """
    from orchzip.runtime.continuous import reconcile_lost_continuous
    from orchzip.runtime.runner import reconcile_lost_runs
    from orchzip.runtime.store import Store

    store = Store(args.state_dir, create=create)
    if store.exists:
        reconcile_lost_runs(store)
        reconcile_lost_continuous(store)
    return store
