"""Registering and controlling tasks: schedule, pause, resume, kill, status. Library calls
for the CLI (and, later, the local API server); they validate, write the store, and return rows.
"""

import datetime
import os
import time

from orchzip.errors import ConfigError
from orchzip.runtime.scheduler.clock import from_iso, to_iso
from orchzip.runtime.scheduler.policies import (
    DEFAULT_MISFIRE_GRACE, DEFAULT_OVERLAP, DEFAULT_RETRY_BACKOFF, OVERLAP_POLICIES,
)
from orchzip.runtime.scheduler.trigger import CronTrigger

__all__ = [
    "schedule_task", "prepare_environment", "next_fire_times", "pause_task", "resume_task", "request_kill", "wait_until_ended",
    "kill_requested", "task_status", "FINAL_TASK_STATUSES",
]

FINAL_TASK_STATUSES = ("killed", "failed", "success", "timed_out")


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def validate_schedule(cron, tz="UTC", timeout=None, overlap=DEFAULT_OVERLAP, misfire_grace=None,
                      retries=0, retry_backoff=None):
    """The task's ``CronTrigger`` if every setting is acceptable; else one clear ``ConfigError``."""
    trigger = CronTrigger(cron, tz or "UTC")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, not {timeout:g}")
    if overlap not in OVERLAP_POLICIES:
        raise ConfigError(f"--overlap must be one of {', '.join(OVERLAP_POLICIES)}, not {overlap!r}")
    if misfire_grace is not None and not misfire_grace >= 0:
        raise ConfigError(f"--misfire-grace must be 0 or more seconds, not {misfire_grace:g}")
    if retries is None or retries < 0:
        raise ConfigError(f"--retries must be 0 or more, not {retries}")
    if retry_backoff is not None and not retry_backoff > 0:
        raise ConfigError(f"--retry-backoff must be a positive number of seconds, not {retry_backoff:g}")
    return trigger


def schedule_task(store, target, cron, name=None, args=None, timeout=None, tz="UTC", overlap=DEFAULT_OVERLAP,
                  misfire_grace=None, retries=0, retry_backoff=None, no_env=False, on_env_progress=None, now=None,
                  log_max_bytes=None, wallaroo_version=None):
    """Register ``target`` (a zip or an orchestration folder) as a scheduled task; returns it.

    A folder is built into a zip now, and the task keeps its own immutable copy of the zip,
    named by its sha256 (see :func:`keep_immutable_copy`): later edits, rebuilds or a deleted
    ``dist/`` do not change the task, as with an orchestration uploaded to Wallaroo.

    :param cron: 5 fields (or 6, seconds first); evaluated in ``tz``.
    :param no_env: run in orchzip's own Python instead of the zip's task environment, which
        is otherwise built (or found cached) now, so that a fire never waits for it.
    :param on_env_progress: called with each line of progress while the environment builds.
    :param now: the registration time (default: now); the first fire comes after it.
    :param log_max_bytes: the cap of each run's log (default: ``$ORCHZIP_LOG_MAX_BYTES`` or 16 MiB).
    :param wallaroo_version: the Wallaroo release the task targets, resolved now and kept
        with the task (see ``wallaroo_versions.resolve_version``).
    """
    trigger = validate_schedule(cron, tz, timeout, overlap, misfire_grace, retries, retry_backoff)
    from orchzip.runtime.runner import prepare_zip
    from orchzip.runtime.wallaroo_versions import resolve_version
    wallaroo_version = resolve_version(wallaroo_version)
    zip_path, sha = keep_immutable_copy(store, prepare_zip(store, target))
    if not no_env:
        prepare_environment(zip_path, on_progress=on_env_progress, wallaroo_version=wallaroo_version)
    return store.create_task(
        "scheduled", zip_path, args=args or {}, name=name or os.path.basename(os.path.abspath(target)),
        source_sha=sha,
        timeout=timeout, schedule=trigger.expr, tz=str(trigger.tz), overlap=overlap,
        misfire_grace=DEFAULT_MISFIRE_GRACE if misfire_grace is None else misfire_grace,
        retries=retries, retry_backoff=DEFAULT_RETRY_BACKOFF if retry_backoff is None else retry_backoff,
        next_fire_at=to_iso(trigger.next_fire_time(now or _utcnow())), no_env=1 if no_env else 0,
        log_max_bytes=log_max_bytes, wallaroo_version=wallaroo_version,
    )


def keep_immutable_copy(store, zip_path):
    """``(path, sha256)`` of the task's own read-only copy of ``zip_path``, named by its sha256.

    A scheduled task runs the code it was scheduled with, as an orchestration uploaded to
    Wallaroo does: rebuilding or deleting ``dist/`` later changes nothing. Copies are content
    addressed, so tasks scheduled from the same bytes share one.
    """
    import hashlib
    import shutil
    digest = hashlib.sha256()
    with open(zip_path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    kept = os.path.join(store.dir_for("zips"), f"{sha}.zip")
    if not os.path.exists(kept):
        tmp = f"{kept}.{os.getpid()}.tmp"
        shutil.copyfile(zip_path, tmp)
        os.chmod(tmp, 0o400)
        os.replace(tmp, kept)  # whole or absent, even if we are killed while copying
    return kept, sha


def prepare_environment(zip_path, on_progress=None, wallaroo_version=None):
    """Build (or find cached) the task environment of a zip now, not at its first fire.

    The scheduler starts runs on its one thread; an environment built there would hold up
    every other task. A requirements.txt that cannot be installed is refused at ``schedule``
    time. Returns the one-line note of which Python the task runs with.
    """
    import tempfile
    from orchzip.builder import safe_extract
    from orchzip.runtime.environments import task_interpreter
    with tempfile.TemporaryDirectory(prefix="orchzip-env-") as work_dir:
        safe_extract(zip_path, work_dir)
        return task_interpreter(work_dir, on_progress=on_progress, wallaroo_version=wallaroo_version)[2]


def next_fire_times(task, count=3):
    """The task's next ``count`` fire times (UTC), starting at its stored next fire."""
    if task["kind"] != "scheduled" or not task["next_fire_at"]:
        return []
    trigger = CronTrigger(task["schedule"], task["tz"] or "UTC")
    fires = [from_iso(task["next_fire_at"])]
    while len(fires) < count and fires[-1] is not None:
        fires.append(trigger.next_fire_time(fires[-1]))
    return [f for f in fires if f is not None]


def _scheduled(store, task_id, verb):
    task = store.get_task(task_id)
    if task["kind"] != "scheduled":
        raise ConfigError(f"task {task['id']} runs once; only scheduled tasks can be {verb}")
    if task["status"] in ("pending_kill", "killed"):
        raise ConfigError(f"task {task['id']} is {task['status']}; it cannot be {verb}")
    return task


def pause_task(store, task_id):
    """Stop firing ``task_id`` (runs in progress go on); fires while paused are not caught up."""
    task = _scheduled(store, task_id, "paused")
    return store.update_task(task["id"], paused=1, retry_at=None)


def resume_task(store, task_id, now=None):
    """Fire ``task_id`` again, from its next fire after now."""
    task = _scheduled(store, task_id, "resumed")
    trigger = CronTrigger(task["schedule"], task["tz"] or "UTC")
    return store.update_task(task["id"], paused=0, next_fire_at=to_iso(trigger.next_fire_time(now or _utcnow())))


def request_kill(store, task_id):
    """Ask for ``task_id`` to be killed (status ``pending_kill``), as Wallaroo's task kill does.

    The process that owns the task's run (``orchzip run``, ``orchzip scheduler``) kills it
    and records ``killed``. A scheduled task with no run and no scheduler is killed at once.
    """
    task = store.get_task(task_id)
    if task["status"] in FINAL_TASK_STATUSES:
        raise ConfigError(f"task {task['id']} has already ended ({task['status']}); nothing to kill")
    if task["kind"] == "run_once" and task["status"] == "started" \
            and not store.list_runs(task_id=task["id"], status="running", limit=1):
        # Its run has ended (the task stays `started`, as on Wallaroo): nothing to stop.
        return store.update_task(task["id"], status="killed")
    from orchzip.runtime.scheduler.loop import scheduler_alive
    if task["kind"] == "scheduled" and scheduler_alive(store) is None:
        # No scheduler owns its runs: nothing would ever act on pending_kill. A run a dead
        # scheduler left is marked lost (and its processes killed) when a scheduler starts.
        return store.update_task(task["id"], status="killed", next_fire_at=None, retry_at=None)
    return store.update_task(task["id"], status="pending_kill")


def kill_requested(store, task_id):
    """Whether someone asked for ``task_id`` to be killed: the ``should_stop`` of its run."""
    return store.get_task(task_id)["status"] in ("pending_kill", "killed")


def wait_until_ended(store, task_id, timeout, interval=0.2):
    """The task once it left ``pending_kill`` (or after ``timeout`` seconds, as it is then)."""
    deadline = time.monotonic() + timeout
    while True:
        task = store.get_task(task_id)
        if task["status"] != "pending_kill" or time.monotonic() >= deadline:
            return task
        time.sleep(interval)


def task_status(store, task_id, runs=5):
    """A task as Wallaroo's ``get_by_id`` shows it, plus the local schedule's details."""
    task = store.get_task(task_id)
    last_runs = store.list_runs(task_id=task["id"], limit=runs)
    status = dict(
        task,
        killed=task["status"] in ("pending_kill", "killed"),
        input_data=task["args"],
        paused=bool(task["paused"]),
        last_runs=[{k: r[k] for k in ("run_id", "status", "created_at", "updated_at", "fire_time", "attempt", "error")}
                   for r in ({**r, "run_id": r["id"]} for r in last_runs)],
    )
    if task["kind"] == "scheduled":
        status["next_fire_times"] = [to_iso(f) for f in next_fire_times(task)] if not task["paused"] else []
        status["skipped_fires"] = store.list_skipped(task["id"], limit=runs)
        from orchzip.runtime.scheduler.loop import scheduler_alive
        status["scheduler"] = scheduler_alive(store)
    return status
