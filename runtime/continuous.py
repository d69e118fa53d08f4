"""Run-continuously tasks: main.py kept running until the task is killed.

On Wallaroo, ``orchestration.run_continuously(name, json_args)`` starts a task of run type
``NetworkService``: main.py is a service, meant to run until someone kills the task, and
Wallaroo restarts it when it stops (its task statuses include ``crash_loop``, Kubernetes'
CrashLoopBackOff). orchzip does the same locally, with these choices (documented in the README):

- Each start of main.py is one run of the task, with its own log and its own row in
  ``orchzip runs list``; its ``attempt`` counts the starts (1, 2, ...).
- When main.py exits, whether it failed or not (a service is not meant to exit), it is started
  again after a backoff: ``backoff`` seconds (1) after a run that had stayed up for
  ``stable_seconds`` (60), doubling with each run in a row that ended sooner, at most
  ``max_backoff`` (60).
- The task is ``started`` while it runs. After ``crash_loop_after`` (3) runs in a row ended
  within ``stable_seconds``, it is ``crash_loop``, and goes on restarting with backoff; once a
  run has stayed up for ``stable_seconds``, it is ``started`` again and the backoff starts over.
- A kill (``orchzip tasks kill``, the API's ``task/kill``, Ctrl-C on ``orchzip run
  --continuously``) stops the run it has (recorded ``killed``) and ends the task ``killed``.
- A task whose zip cannot start at all (no main.py, an environment that does not build) ends
  ``failed`` at once: the same zip would fail the same way at every restart.
- A task whose ``orchzip run --continuously`` was killed outright ends ``failed`` as soon as
  another orchzip command sees it (``reconcile_lost_continuous``): nothing restarts it any more.

The policy is pure (``RestartPolicy``: delays and statuses from counts); ``ContinuousTask``
does the starting, watching and waiting, with the clock and the wait injectable for tests.
"""

import dataclasses
import os
import threading
import time

from orchzip.errors import ConfigError, OrchzipError

__all__ = ["RestartPolicy", "ContinuousTask", "run_continuously", "create_continuous_task", "reconcile_lost_continuous",
           "start_in_thread", "KIND", "RUN_TYPE"]

KIND = "continuous"
RUN_TYPE = "NetworkService"
POLL_SECONDS = 0.1


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """When main.py is started again, and when the task is in a crash loop.

    :param backoff: seconds before restarting after a run that had stayed up (the first restart).
    :param max_backoff: the longest wait between two runs.
    :param stable_seconds: a run that stays up this long is healthy: the count of quick exits,
        the backoff and a ``crash_loop`` status start over.
    :param crash_loop_after: this many quick exits in a row make the task ``crash_loop``.
    """

    backoff: float = 1.0
    max_backoff: float = 60.0
    stable_seconds: float = 60.0
    crash_loop_after: int = 3

    def __post_init__(self):
        for name in ("backoff", "max_backoff", "stable_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more seconds, not {value!r}")
        if self.max_backoff < self.backoff:
            raise ConfigError(f"--max-backoff ({self.max_backoff:g}) must be at least --backoff ({self.backoff:g})")
        if not isinstance(self.crash_loop_after, int) or self.crash_loop_after < 1:
            raise ConfigError(f"--crash-loop-after must be 1 or more, not {self.crash_loop_after!r}")

    def delay(self, quick_exits):
        """Seconds to wait before the next start, after ``quick_exits`` quick exits in a row."""
        return min(self.max_backoff, self.backoff * 2 ** max(0, quick_exits - 1))

    def status(self, quick_exits):
        """The task's status after ``quick_exits`` quick exits in a row."""
        return "crash_loop" if quick_exits >= self.crash_loop_after else "started"

    def quick_exits_after(self, quick_exits, seconds_up):
        """The count of quick exits in a row once a run that stayed up ``seconds_up`` ended."""
        return quick_exits + 1 if seconds_up < self.stable_seconds else 0


def create_continuous_task(store, target, args=None, name=None, **fields):
    """Record a run-continuously task for ``target`` (a zip or folder, built now); returns it.

    The task keeps its own read-only copy of the zip, as a scheduled task does: every restart
    runs the code it was started with, as on Wallaroo, even when the folder is run again
    edited (which rebuilds its zip in the state's ``builds/``) or ``dist/`` is rebuilt.
    """
    from orchzip.runtime.runner import prepare_zip
    from orchzip.runtime.scheduler.control import keep_immutable_copy
    zip_path, _sha = keep_immutable_copy(store, prepare_zip(store, target))
    return store.create_task(KIND, zip_path, args=args or {},
                             name=name or os.path.basename(os.path.abspath(target).rstrip("/")), **fields)


class ContinuousTask:
    """Keeps one run-continuously task's main.py running until ``should_stop`` says so.

    :param should_stop: polled; true stops the run (recorded ``killed``) and ends the task.
    :param stop_status: what the task becomes when stopped (``killed``); None leaves its status
        (a server that stops, to take the task up again when it starts). A task someone asked
        to kill (``pending_kill``) always ends ``killed``.
    :param stop_reason: called when stopping: the error recorded on the run it kills.
    :param on_run: called with each run record as it starts.
    :param on_output: called with each ``(stream, text)`` piece of the current run's log.
    :param on_restart: called with ``(ended run, seconds to wait, task status)`` after each exit.
    :param clock: a monotonic clock, in seconds.
    :param wait: ``wait(seconds)`` pauses between runs; returns early (true) when stopping.
    """

    def __init__(self, store, task, policy=None, should_stop=None, stop_status="killed", stop_reason=None,
                 python=None, no_env=False, on_env_progress=None, on_run=None, on_output=None, on_restart=None,
                 clock=time.monotonic, wait=None):
        self.store, self.task = store, task
        self.policy = policy or RestartPolicy()
        self.should_stop = should_stop or (lambda: False)
        self.stop_status = stop_status
        self.stop_reason = stop_reason or (lambda: "killed on request")
        self.start_options = dict(python=python, no_env=no_env, on_env_progress=on_env_progress)
        self.on_run, self.on_output, self.on_restart = on_run, on_output, on_restart
        self.clock = clock
        self.wait = wait or self._wait
        self.quick_exits = 0
        self.attempt = 0
        self.current = None  # the RunningTask of the run going on, if any

    def run(self):
        """Start, watch and restart main.py until stopped; returns the task as it ends."""
        try:
            while not self._stopping():
                final, seconds_up = self._one_run()
                if final is None or self._stopping():
                    break
                self.quick_exits = self.policy.quick_exits_after(self.quick_exits, seconds_up)
                status = self.policy.status(self.quick_exits)
                self._set_status(status)
                delay = self.policy.delay(self.quick_exits)
                if self.on_restart is not None:
                    self.on_restart(final, delay, status)
                if self.wait(delay):
                    break
        except OrchzipError:
            raise  # a zip that cannot start: the task is failed already
        except BaseException:  # Ctrl-C, or a bug: nothing may be left running
            if self.current is not None:
                self.current.kill("killed", "orchzip run was interrupted")
            self._end("killed")
            raise
        return self._end(self.stop_status)

    def _one_run(self):
        """One start of main.py, watched to its end: ``(final run, seconds it was up)``."""
        from orchzip.runtime.runner import start_run
        self.attempt += 1
        try:
            self.current = start_run(_Attempt(self.store, self.attempt), self.task, **self.start_options)
        except OrchzipError:
            self._set_status("failed")  # recorded on the run by start_run; a restart would fail alike
            raise
        self._set_status(self.policy.status(self.quick_exits))
        if self.on_run is not None:
            self.on_run(self.current.run)
        started = self.clock()
        healthy = False
        try:
            while True:
                final = self.current.poll()
                self.current.read_events()
                self._show_output()
                if final is not None:
                    return final, self.clock() - started
                if self._stopping():
                    self.current.kill("killed", self.stop_reason())
                    self._show_output()
                    return None, self.clock() - started
                if not healthy and self.clock() - started >= self.policy.stable_seconds:
                    healthy = True  # it stayed up: the crash loop, if any, is over
                    self.quick_exits = 0
                    self._set_status("started")
                self.current.pause(POLL_SECONDS)
        finally:
            self.current = None

    def _show_output(self):
        if self.on_output is not None and self.current is not None:
            for stream, text in self.current.read_output():
                self.on_output(stream, text)

    def _stopping(self):
        stop = self.should_stop()
        if isinstance(stop, str):  # the reason the stopped run's record gives
            self.stop_reason = lambda: stop
        return bool(stop)

    def _wait(self, seconds):
        deadline = self.clock() + seconds
        while self.clock() < deadline:
            if self._stopping():
                return True
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - self.clock())))
        return self._stopping()

    def _set_status(self, status):
        current = self.store.get_task(self.task["id"])["status"]
        if current not in ("pending_kill", "killed") and current != status:
            self.task = self.store.update_task(self.task["id"], status=status)

    def _end(self, status):
        task = self.store.get_task(self.task["id"])
        if task["status"] == "pending_kill":
            status = "killed"
        if status is not None and task["status"] != "killed":
            task = self.store.update_task(task["id"], status=status)
        return task


class _Attempt:
    """The store, with each run it creates numbered with its start (``attempt``) and timed."""

    def __init__(self, store, attempt):
        self._store, self._attempt = store, attempt

    def create_run(self, task_id, **fields):
        # fire_time: when this start fired. It names the run's output (its idempotency key) apart
        # from the other starts', which each write their own.
        from orchzip.runtime.store import utcnow
        return self._store.create_run(task_id, attempt=self._attempt, fire_time=utcnow(), **fields)

    def __getattr__(self, name):
        return getattr(self._store, name)


def run_continuously(store, target, args=None, name=None, policy=None, should_stop=None, log_max_bytes=None,
                     **options):
    """Run ``target`` (a zip or folder) as a run-continuously task until stopped; returns the task.

    :param should_stop: called with the task (a dict) while it goes; true kills it (a string is
        the reason its run's record gives).
    :param log_max_bytes: the cap of each run's log (default: ``$ORCHZIP_LOG_MAX_BYTES`` or 16 MiB).
    :param options: passed to :class:`ContinuousTask` (``no_env``, ``on_output``, ``on_run``, ...).
    """
    from orchzip.runtime.task_logs import resolve_max_bytes
    policy = policy or RestartPolicy()
    resolve_max_bytes(log_max_bytes)  # refused before anything is built or recorded
    task = create_continuous_task(store, target, args=args, name=name, log_max_bytes=log_max_bytes)
    check = (lambda: should_stop(store.get_task(task["id"]))) if should_stop else None
    return ContinuousTask(store, task, policy, should_stop=check, **options).run()


LOST_SUPERVISOR = "its orchzip run --continuously stopped without ending the task"


def reconcile_lost_continuous(store):
    """End the run-continuously tasks whose `orchzip run --continuously` died unrecorded.

    Nothing restarts their main.py any more: a running run left behind is settled as lost
    (its process is gone with its runner, see task_bootstrap), and the task ends ``failed``
    (``killed`` if a kill was asked for). Tasks of ``orchzip serve`` are the server's own.
    """
    from orchzip.runtime.runner import _run_process_alive, _runner_alive, settle_lost_run
    for task in store.list_tasks(kind=KIND):
        if task.get("orch_id") or task["status"] not in ("pending", "started", "crash_loop", "pending_kill"):
            continue
        latest = store.list_runs(task_id=task["id"], limit=1)
        if not latest or not latest[0].get("runner_pid") or _runner_alive(latest[0]):
            continue  # still being set up, or its supervisor is alive
        if latest[0]["status"] == "running":
            if latest[0].get("pid") and _run_process_alive(latest[0]):
                continue  # its supervisor is gone but main.py is not, yet
            settle_lost_run(store, latest[0], LOST_SUPERVISOR)
        store.update_task(task["id"], status="killed" if task["status"] == "pending_kill" else "failed")


def start_in_thread(store, task, policy=None, should_stop=None, stop_status="killed", **options):
    """Run ``task`` on a daemon thread of its own (what ``orchzip serve`` does); returns the thread."""
    runner = ContinuousTask(store, task, policy, should_stop=should_stop, stop_status=stop_status, **options)

    def target():
        try:
            runner.run()
        except OrchzipError:
            pass  # recorded on the run and the task

    thread = threading.Thread(target=target, name=f"continuous-{task['id'][:8]}", daemon=True)
    thread.start()
    return thread
