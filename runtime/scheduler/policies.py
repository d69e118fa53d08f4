"""What the scheduler does at a given moment: pure decisions, no clock, no store, no processes.

Three policies per task, safe by default:

- **overlap** — a fire comes while the task's previous run still runs: ``forbid`` (default)
  skips the fire and records it skipped; ``allow`` starts another run beside it;
  ``replace`` kills the running one (recorded ``killed``) and starts the new one.
- **misfire** — fires the scheduler did not see on time (it was stopped, the machine slept)
  are coalesced: at most one run, for the latest missed fire, and only if that fire is at
  most ``misfire_grace`` seconds old; every other missed fire is recorded skipped. Never a
  burst of catch-up runs.
- **retries** — a run that ends ``failure`` or ``timed_out`` is tried again up to
  ``retries`` times, after ``retry_backoff`` seconds, doubling each time (at most an hour).
  A retry that would start after the task's next fire is dropped: the fire supersedes it.
"""

import dataclasses
import datetime

# Seconds the runs still going get to finish when a scheduler stops (here, not in loop, so the
# CLI's parser can show it without importing the scheduler).
DEFAULT_GRACE = 30.0

__all__ = [
    "OVERLAP_POLICIES", "DEFAULT_OVERLAP", "DEFAULT_MISFIRE_GRACE", "DEFAULT_GRACE", "DEFAULT_RETRY_BACKOFF",
    "LATE_TOLERANCE", "FireDecision", "decide_fires", "retry_time", "decide_retry",
]

OVERLAP_POLICIES = ("forbid", "allow", "replace")
DEFAULT_OVERLAP = "forbid"
DEFAULT_MISFIRE_GRACE = 3600.0
DEFAULT_RETRY_BACKOFF = 30.0
MAX_RETRY_BACKOFF = 3600.0
# A fire seen this late is still on time: the loop wakes a little after the fire time.
LATE_TOLERANCE = datetime.timedelta(seconds=1)
# Missed fires counted one by one; beyond this the count is a lower bound (a week of a
# per-second schedule must not take minutes to walk through).
COUNT_LIMIT = 10000


@dataclasses.dataclass(frozen=True)
class FireDecision:
    """What to do about the due fires of one task.

    :param run_fire: the fire to start a run for, or None.
    :param replace: kill the task's running runs before starting ``run_fire``.
    :param skipped: ``(first, last, count, reason)`` ranges of fires not run.
    :param next_fire: the first fire after now (None: the schedule never fires again).
    """

    run_fire: datetime.datetime = None
    replace: bool = False
    skipped: tuple = ()
    next_fire: datetime.datetime = None


def decide_fires(trigger, next_fire, now, running=False, overlap=DEFAULT_OVERLAP,
                 misfire_grace=DEFAULT_MISFIRE_GRACE):
    """The decision for a task whose next fire is ``next_fire``; None while it is not due.

    :param trigger: the task's ``Trigger``.
    :param running: whether a run of the task is running now.
    """
    if next_fire is None or next_fire > now:
        return None
    count, before_latest, latest = _due_fires(trigger, next_fire, now)
    skipped = []
    if count > 1:
        skipped.append((next_fire, before_latest, count - 1, _missed_reason(count - 1, latest)))
    late = now - latest
    upcoming = trigger.next_fire_time(now)
    if late > datetime.timedelta(seconds=misfire_grace) + LATE_TOLERANCE:
        reason = f"missed by {_seconds(late)}, more than the misfire grace of {misfire_grace:g} s"
        return FireDecision(skipped=tuple(skipped) + ((latest, latest, 1, reason),), next_fire=upcoming)
    if running and overlap == "forbid":
        reason = "overlap: the previous run was still running (overlap policy forbid)"
        return FireDecision(skipped=tuple(skipped) + ((latest, latest, 1, reason),), next_fire=upcoming)
    return FireDecision(run_fire=latest, replace=running and overlap == "replace",
                        skipped=tuple(skipped), next_fire=upcoming)


def _due_fires(trigger, first, now):
    """``(count, the fire before the latest, the latest)`` of fires from ``first`` to ``now``."""
    count, previous, latest = 1, None, first
    while True:
        following = trigger.next_fire_time(latest)
        if following is None or following > now:
            return count, previous, latest
        count, previous, latest = count + 1, latest, following
        if count == COUNT_LIMIT:
            previous, latest = _latest_two_before(trigger, latest, now)
            return count, previous, latest


def _latest_two_before(trigger, known, now):
    """The last two fires at or before ``now``, searching back from ``now`` in widening steps."""
    step = datetime.timedelta(seconds=60)
    while True:
        probe = max(known, now - step)
        fires = [probe] if probe == known else []
        fire = trigger.next_fire_time(probe)
        while fire is not None and fire <= now:
            fires = (fires + [fire])[-2:]
            fire = trigger.next_fire_time(fire)
        if len(fires) == 2 or probe == known:
            return (fires[-2] if len(fires) == 2 else known), fires[-1]
        step *= 4


def _missed_reason(count, latest):
    more = "or more " if count >= COUNT_LIMIT - 1 else ""
    return f"missed: {count} {more}fire(s) passed while no scheduler ran them; coalesced into the fire at {latest.isoformat()}"


def _seconds(delta):
    return f"{delta.total_seconds():.0f} s"


def retry_time(status, attempt, retries, backoff, ended):
    """When to try a run again, or None.

    :param status: the run's final status; only ``failure`` and ``timed_out`` are retried.
    :param attempt: the attempt that ended (1 for a fire's first run).
    :param retries: how many times a fire's run may be tried again.
    :param backoff: seconds before the first retry; doubled for each one after.
    """
    if status not in ("failure", "timed_out") or attempt > (retries or 0):
        return None
    delay = min((backoff if backoff is not None else DEFAULT_RETRY_BACKOFF) * 2 ** (attempt - 1), MAX_RETRY_BACKOFF)
    return ended + datetime.timedelta(seconds=delay)


def decide_retry(retry_at, next_fire, now, running=False, overlap=DEFAULT_OVERLAP):
    """``"wait"``, ``"start"`` or ``"drop"`` for a retry due at ``retry_at``."""
    if next_fire is not None and next_fire <= retry_at:
        return "drop"  # the next fire comes first and supersedes the retry
    if retry_at > now:
        return "wait"
    if running and overlap == "forbid":
        return "drop"
    return "start"
