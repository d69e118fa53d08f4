"""The scheduler: fires due scheduled tasks, watches their runs, survives its own crashes.

One scheduler per state directory holds a lease row in the store (refused: a second one).
All its decisions are made on one thread, from the store's rows and an injectable clock:

1. A fire is *claimed* before its run starts: one transaction moves the task's
   ``next_fire_at`` on and notes ``claimed_fire_at`` (compare-and-set, so a pause, kill or
   resume by another process wins). The run row carries the fire time. A scheduler killed
   between the claim and the run row leaves a claim without a run: the next scheduler
   considers that fire again. With a run row, it does not. So no fire is doubled or lost.
2. At start, runs of scheduled tasks left ``running`` by a dead scheduler are settled from
   their sinks' commit records (see ``runtime/settle.py``): ``success`` if their output
   committed, else ``failure`` ("scheduler stopped (lost run)") and retried as ``--retries``
   says, with the same idempotency key. What is left of their processes is killed first
   (the task itself died with the scheduler, see task_bootstrap).
3. ``orchzip tasks kill`` sets ``pending_kill`` in the store; the loop sees it, kills the
   task's runs (recorded ``killed``) and sets the task ``killed``: it fires no more.
"""

import abc
import dataclasses
import datetime
import logging
import os
import signal
import socket
import threading
import time

import psutil

from orchzip.errors import ConfigError, OrchzipError
from orchzip.runtime.scheduler.clock import SystemClock, from_iso, to_iso
from orchzip.runtime.scheduler.policies import (
    DEFAULT_GRACE, DEFAULT_MISFIRE_GRACE, DEFAULT_OVERLAP, decide_fires, decide_retry, retry_time,
)
from orchzip.runtime.scheduler.trigger import CronTrigger

__all__ = ["Scheduler", "Executor", "ProcessExecutor", "SchedulerBusy", "scheduler_alive", "LOST_RUN", "DEFAULT_GRACE"]

log = logging.getLogger("orchzip.scheduler")

LOST_RUN = "scheduler stopped (lost run)"
ACTIVE_TASK = ("pending", "started")
HEARTBEAT_SECONDS = 5.0
FOREIGN_HOST_STALE = datetime.timedelta(seconds=60)


class SchedulerBusy(ConfigError):
    @classmethod
    def from_lease(cls, lease, state_dir):
        return cls(
            f"another scheduler (pid {lease['pid']} on {lease['host']}, since {lease['started_at']}) "
            f"is running on {state_dir}; stop it first, or give another --state-dir"
        )


class Executor(abc.ABC):
    """How a run starts. The handle it returns has ``run_id``, ``poll()`` and ``kill(status, reason)``."""

    @abc.abstractmethod
    def start(self, task, fire_time, attempt):
        """Start a run of ``task`` for ``fire_time`` (its ``attempt``-th try); returns the handle."""


class ProcessExecutor(Executor):
    """Runs through the run-once runner: unpacked zip, child process group, log, timeout."""

    def __init__(self, store, python=None):
        self.store, self.python = store, python

    def start(self, task, fire_time, attempt):
        from orchzip.runtime.runner import start_run
        tagged = _RunTagger(self.store, fire_time=to_iso(fire_time), attempt=attempt)
        return start_run(tagged, task, python=self.python, no_env=bool(task.get("no_env")))


class _RunTagger:
    """The store, with each run it creates tagged with its fire time and attempt in the same row."""

    def __init__(self, store, **tags):
        self._store, self._tags = store, tags

    def create_run(self, task_id, **fields):
        return self._store.create_run(task_id, **self._tags, **fields)

    def __getattr__(self, name):
        return getattr(self._store, name)


@dataclasses.dataclass
class _Active:
    task: dict
    handle: object
    fire_time: datetime.datetime
    attempt: int


class Scheduler:
    """Fires the store's scheduled tasks until stopped.

    :param executor: starts runs (default: real child processes).
    :param clock: the time source (default: the system clock).
    :param grace: seconds running runs get to finish when the scheduler stops.
    :param idle_seconds: longest sleep; the store is re-read this often for other processes' changes.
    :param poll_seconds: how often running runs are polled.
    """

    def __init__(self, store, executor=None, clock=None, grace=DEFAULT_GRACE, idle_seconds=1.0, poll_seconds=0.2):
        self.store = store
        self.executor = executor or ProcessExecutor(store)
        self.clock = clock or SystemClock()
        self.grace = grace
        self.idle_seconds, self.poll_seconds = idle_seconds, poll_seconds
        self._active = {}
        self._triggers = {}
        self._wake = threading.Event()
        self._stop_requested = False
        self._pid = os.getpid()
        self._last_heartbeat = 0.0

    # -- control --------------------------------------------------------------------------
    def wakeup(self):
        """Make the loop look at the store now instead of at the end of its wait."""
        self._wake.set()

    def stop(self, grace=None):
        """Start no new run; let running ones finish within ``grace`` seconds, then kill them."""
        if grace is not None:
            self.grace = grace
        self._stop_requested = True
        self._wake.set()

    def install_signal_handlers(self):
        """SIGINT/SIGTERM stop the scheduler; a second one stops it without the grace period."""
        def handle(signum, frame):
            # Only flags here: taking a lock inside a signal handler can deadlock.
            if self._stop_requested:
                self.grace = 0
            self._stop_requested = True
            log.info("%s: starting no new run; waiting up to %g s for running ones",
                     signal.Signals(signum).name, self.grace)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handle)

    @property
    def running_runs(self):
        return list(self._active)

    # -- the loop -------------------------------------------------------------------------
    def run(self):
        """Take the lease, recover what a dead scheduler left, fire tasks until stopped."""
        self.start()
        try:
            while not self._stop_requested:
                wait = self.tick()
                self.clock.wait(self._wake, min(wait, self.idle_seconds))
                self._wake.clear()
            self.shutdown()
        except BaseException as err:
            # A bug or a broken store: leave no run behind that nobody watches.
            for run_id, active in list(self._active.items()):
                self._ended(run_id, active, active.handle.kill("killed", f"scheduler stopped by an error: {err!r}"),
                            retry=False)
            raise
        finally:
            self.close()

    def start(self):
        me = psutil.Process()
        holder = self.store.acquire_lease(self._pid, me.create_time(), socket.gethostname(), _holder_alive)
        if holder is not None:
            raise SchedulerBusy.from_lease(holder, self.store.state_dir)
        log.info("scheduler started (pid %d) on %s", self._pid, self.store.state_dir)
        self._recover()

    def close(self):
        self.store.release_lease(self._pid)
        log.info("scheduler stopped")

    def tick(self):
        """One pass: reap ended runs, carry out kills, fire what is due; returns seconds to wait."""
        now = self.clock.now()
        self._heartbeat()
        self._reap()
        tasks = self.store.list_tasks(kind="scheduled")
        self._handle_kills(tasks)
        waits = [self.idle_seconds]
        for task in tasks:
            if self._stop_requested:
                break
            if task["status"] not in ACTIVE_TASK or task["paused"]:
                continue
            try:
                due = self._tick_task(task, now)
            except OrchzipError as err:
                log.error("task %s: %s", _label(task), err)
                continue
            if due is not None:
                waits.append((due - self.clock.now()).total_seconds())
        if self._active:
            waits.append(self.poll_seconds)
        return max(0.0, min(waits))

    def shutdown(self):
        """Let running runs end within the grace period, then kill what is left."""
        started, never = self.clock.now(), threading.Event()
        while self._active and (self.clock.now() - started).total_seconds() < self.grace:
            self._reap()
            self._handle_kills(self.store.list_tasks(kind="scheduled"))
            if self._active:
                self.clock.wait(never, self.poll_seconds)
        for run_id, active in list(self._active.items()):
            reason = f"scheduler stopped; the run did not end within its grace period of {self.grace:g} s"
            self._ended(run_id, active, active.handle.kill("killed", reason), retry=False)

    # -- one task -------------------------------------------------------------------------
    def _tick_task(self, task, now):
        trigger = self._trigger(task)
        if task["status"] == "pending":
            task = self.store.update_task(task["id"], status="started")
        next_fire = from_iso(task["next_fire_at"])
        if next_fire is None:
            next_fire = trigger.next_fire_time(now)
            self.store.claim_fire(task["id"], None, to_iso(next_fire))
            return next_fire
        running = self._runs_of(task["id"])
        overlap = task["overlap"] or DEFAULT_OVERLAP
        grace = DEFAULT_MISFIRE_GRACE if task["misfire_grace"] is None else task["misfire_grace"]
        decision = decide_fires(trigger, next_fire, now, bool(running), overlap, grace)
        if decision is None:
            return self._tick_retry(task, now, next_fire, running, overlap)
        skipped = [(to_iso(a), to_iso(b), count, reason) for a, b, count, reason in decision.skipped]
        run_fire = to_iso(decision.run_fire)
        if not self.store.claim_fire(task["id"], task["next_fire_at"], to_iso(decision.next_fire), run_fire, skipped):
            return now  # paused, killed or resumed meanwhile: look again
        for first, last, count, reason in skipped:
            log.info("task %s: skipped %d fire(s) %s..%s: %s", _label(task), count, first, last, reason)
        if decision.run_fire is not None:
            if decision.replace:
                for run_id, active in running:
                    reason = f"replaced by the run of the fire at {run_fire} (overlap policy replace)"
                    self._ended(run_id, active, active.handle.kill("killed", reason), retry=False)
            if task["retry_at"]:
                self.store.update_task(task["id"], retry_at=None, retry_fire_at=None, retry_attempt=None)
            self._start(task, decision.run_fire, 1)
        return decision.next_fire

    def _tick_retry(self, task, now, next_fire, running, overlap):
        retry_at = from_iso(task["retry_at"])
        if retry_at is None:
            return next_fire
        action = decide_retry(retry_at, next_fire, now, bool(running), overlap)
        if action == "wait":
            return min(retry_at, next_fire)
        if not self.store.take_retry(task["id"], task["retry_at"]):
            return now
        fire_time = from_iso(task["retry_fire_at"])
        if action == "drop":
            log.info("task %s: retry %d of the fire at %s dropped (%s)", _label(task), task["retry_attempt"] - 1,
                     task["retry_fire_at"], "the previous run still runs" if running else "the next fire comes first")
        else:
            self._start(task, fire_time, task["retry_attempt"])
        return next_fire

    def _start(self, task, fire_time, attempt):
        try:
            handle = self.executor.start(task, fire_time, attempt)
        except (OrchzipError, OSError) as err:
            self.store.clear_claim(task["id"])
            log.error("task %s: the run for the fire at %s could not start: %s", _label(task), to_iso(fire_time), err)
            self._fail_unstarted(task, fire_time, attempt, str(err))
            return
        self.store.clear_claim(task["id"])
        self._active[handle.run_id] = _Active(task, handle, fire_time, attempt)
        log.info("task %s: run %s started for the fire at %s%s", _label(task), handle.run_id, to_iso(fire_time),
                 f" (attempt {attempt})" if attempt > 1 else "")

    def _fail_unstarted(self, task, fire_time, attempt, error):
        for run in self.store.list_runs(task_id=task["id"], status="running", limit=10):
            if run["fire_time"] == to_iso(fire_time) and run["id"] not in self._active:
                self.store.update_run(run["id"], status="failure", ended_at=to_iso(self.clock.now()), error=error)
        self._schedule_retry(task, "failure", fire_time, attempt)

    # -- runs -----------------------------------------------------------------------------
    def _runs_of(self, task_id):
        return [(run_id, a) for run_id, a in self._active.items() if a.task["id"] == task_id]

    def _reap(self):
        for run_id, active in list(self._active.items()):
            final = active.handle.poll()
            if final is not None:
                self._ended(run_id, active, final)

    def _ended(self, run_id, active, final, retry=True):
        self._active.pop(run_id, None)
        log.info("task %s: run %s %s%s", _label(active.task), run_id, final["status"],
                 f" ({final['error']})" if final.get("error") else "")
        if retry:
            self._schedule_retry(active.task, final["status"], active.fire_time, active.attempt)

    def _schedule_retry(self, task, status, fire_time, attempt):
        task = self.store.get_task(task["id"])
        if task["status"] not in ACTIVE_TASK or task["paused"]:
            return
        at = retry_time(status, attempt, task["retries"], task["retry_backoff"], self.clock.now())
        if at is not None:
            self.store.update_task(task["id"], retry_at=to_iso(at), retry_fire_at=to_iso(fire_time),
                                   retry_attempt=attempt + 1)
            log.info("task %s: retry %d of the fire at %s at %s", _label(task), attempt, to_iso(fire_time), to_iso(at))

    def _handle_kills(self, tasks):
        for task in tasks:
            if task["status"] not in ("pending_kill", "killed"):
                continue
            for run_id, active in self._runs_of(task["id"]):
                self._ended(run_id, active, active.handle.kill("killed", "killed on request"), retry=False)
            if task["status"] == "pending_kill":
                self.store.update_task(task["id"], status="killed", next_fire_at=None, retry_at=None)
                log.info("task %s: killed; it fires no more", _label(task))

    # -- start-up -------------------------------------------------------------------------
    def _recover(self):
        from orchzip.runtime.runner import settle_lost_run
        for run in self.store.running_runs(kind="scheduled"):
            # Settled from its commit records: a run whose output committed before the old
            # scheduler died is a success; one that did not is retried as --retries says,
            # with the same idempotency key, so its sinks' ledgers keep it exactly once.
            final = settle_lost_run(self.store, run, LOST_RUN)
            log.warning("run %s of task %s: %s%s", run["id"], run["task_id"][:8], final["status"],
                        f" ({final['error']})" if final.get("error") else "")
            if final["status"] != "success" and run.get("fire_time"):
                self._schedule_retry(self.store.get_task(run["task_id"]), final["status"],
                                     from_iso(run["fire_time"]), run.get("attempt") or 1)
        for task in self.store.list_tasks(kind="scheduled"):
            claimed = task["claimed_fire_at"]
            if claimed and not any(r["fire_time"] == claimed for r in self.store.list_runs(task_id=task["id"], limit=20)):
                # Claimed, but its run never started: that fire is due again.
                self.store.update_task(task["id"], next_fire_at=claimed, claimed_fire_at=None)
            elif claimed:
                self.store.clear_claim(task["id"])
            if task["status"] == "pending_kill":
                self.store.update_task(task["id"], status="killed", next_fire_at=None, retry_at=None)

    def _trigger(self, task):
        key = (task["schedule"], task["tz"])
        if key not in self._triggers:
            self._triggers[key] = CronTrigger(task["schedule"], task["tz"] or "UTC")
        return self._triggers[key]

    def _heartbeat(self):
        if time.monotonic() - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self.store.heartbeat_lease(self._pid)
            self._last_heartbeat = time.monotonic()


def _label(task):
    return f"{task['name'] or ''} ({task['id'][:8]})".strip()


def scheduler_alive(store):
    """The lease row of the scheduler running on ``store``'s state directory, or None."""
    lease = store.get_lease()
    return lease if lease is not None and _holder_alive(lease) else None


def _holder_alive(lease):
    """Whether the scheduler that holds ``lease`` still runs (a reused pid does not count)."""
    if lease["host"] != socket.gethostname():
        heartbeat = from_iso(lease["heartbeat_at"])
        return datetime.datetime.now(datetime.timezone.utc) - heartbeat < FOREIGN_HOST_STALE
    try:
        process = psutil.Process(lease["pid"])
        return lease["pid_started"] is None or abs(process.create_time() - lease["pid_started"]) < 1.0
    except psutil.NoSuchProcess:
        return False
