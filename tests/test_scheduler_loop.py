"""The scheduler loop with an injected clock and a fake executor: no processes, no waiting."""

import datetime
import os
import zoneinfo

import psutil
import pytest

from orchzip.runtime.scheduler import control
from orchzip.runtime.scheduler.clock import FakeClock, from_iso, to_iso
from orchzip.runtime.scheduler.loop import LOST_RUN, Executor, Scheduler, SchedulerBusy
from orchzip.runtime.store import Store

UTC = datetime.timezone.utc
T0 = datetime.datetime(2024, 6, 1, 0, 0, tzinfo=UTC)


class FakeRun:
    """A run that ends ``duration`` seconds (fake time) after it starts, with ``outcome``."""

    def __init__(self, store, clock, task, fire_time, attempt, duration, outcome):
        self.store, self.clock = store, clock
        self.run = store.create_run(task["id"], fire_time=to_iso(fire_time), attempt=attempt,
                                    started_at=to_iso(clock.now()))
        self.ends = clock.now() + datetime.timedelta(seconds=duration) if duration is not None else None
        self.outcome = outcome
        self.final = None

    @property
    def run_id(self):
        return self.run["id"]

    def poll(self):
        if self.final is None and self.ends is not None and self.clock.now() >= self.ends:
            self.final = self.store.update_run(self.run_id, status=self.outcome, ended_at=to_iso(self.clock.now()))
        return self.final

    def kill(self, status="killed", reason="killed on request"):
        if self.final is None:
            self.final = self.store.update_run(self.run_id, status=status, error=reason, ended_at=to_iso(self.clock.now()))
        return self.final


class FakeExecutor(Executor):
    def __init__(self, store, clock):
        self.store, self.clock = store, clock
        self.duration, self.outcome = 1.0, "success"  # per task name: dicts below win
        self.durations, self.outcomes = {}, {}

    def start(self, task, fire_time, attempt):
        return FakeRun(self.store, self.clock, task, fire_time, attempt,
                       self.durations.get(task["name"], self.duration), self.outcomes.get(task["name"], self.outcome))


class Harness:
    def __init__(self, tmp_path, start=T0):
        self.zip = str(tmp_path / "orch.zip")
        open(self.zip, "wb").close()  # a zip path is taken as it is; the fake executor never opens it
        self.store = Store(str(tmp_path / "state"))
        self.clock = FakeClock(start)
        self.executor = FakeExecutor(self.store, self.clock)
        self.scheduler = None

    def schedule(self, cron, name="t", **options):
        return control.schedule_task(self.store, self.zip, cron, name=name, no_env=True, now=self.clock.now(), **options)

    def start(self, grace=60.0):
        self.scheduler = Scheduler(self.store, self.executor, self.clock, grace=grace, idle_seconds=3600, poll_seconds=1)
        self.scheduler.start()
        return self.scheduler

    def run_until(self, end):
        """The loop as ``Scheduler.run`` drives it, the fake clock jumping over each wait."""
        while self.clock.now() < end:
            wait = self.scheduler.tick()
            remaining = (end - self.clock.now()).total_seconds()
            self.clock.advance(min(max(wait, 0.01), remaining))
        self.scheduler.tick()

    def runs(self, task):
        return sorted(self.store.list_runs(task_id=task["id"]), key=lambda r: (r["fire_time"], r["attempt"]))

    def skipped(self, task):
        return sorted(self.store.list_skipped(task["id"]), key=lambda s: s["fire_time"])

    def close(self):
        if self.scheduler is not None:
            self.scheduler.close()
        self.store.close()


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.close()


def minutes(n, seconds=0):
    return T0 + datetime.timedelta(minutes=n, seconds=seconds)


def test_each_fire_starts_exactly_one_run(harness):
    task = harness.schedule("*/5 * * * *")
    harness.start()
    harness.run_until(minutes(31))
    runs = harness.runs(task)
    assert [r["fire_time"] for r in runs] == [to_iso(minutes(m)) for m in (5, 10, 15, 20, 25, 30)]
    assert {r["status"] for r in runs} == {"success"} and {r["attempt"] for r in runs} == {1}
    assert harness.skipped(task) == []
    assert harness.store.get_task(task["id"])["status"] == "started"
    assert harness.store.get_task(task["id"])["next_fire_at"] == to_iso(minutes(35))


def test_forbid_skips_and_records_a_fire_while_the_previous_run_runs(harness):
    task = harness.schedule("*/5 * * * *")
    harness.executor.duration = 7 * 60
    harness.start()
    harness.run_until(minutes(21))
    assert [r["fire_time"] for r in harness.runs(task)] == [to_iso(minutes(5)), to_iso(minutes(15))]
    skipped = harness.skipped(task)
    assert [(s["fire_time"], s["count"]) for s in skipped] == [(to_iso(minutes(10)), 1), (to_iso(minutes(20)), 1)]
    assert all("overlap" in s["reason"] for s in skipped)


def test_allow_runs_side_by_side(harness):
    task = harness.schedule("*/5 * * * *", overlap="allow")
    harness.executor.duration = 7 * 60
    harness.start()
    harness.run_until(minutes(11))
    assert len(harness.scheduler.running_runs) == 2
    assert [r["fire_time"] for r in harness.runs(task)] == [to_iso(minutes(5)), to_iso(minutes(10))]


def test_replace_kills_the_running_run_and_starts_the_new_one(harness):
    task = harness.schedule("*/5 * * * *", overlap="replace")
    harness.executor.duration = 7 * 60
    harness.start()
    harness.run_until(minutes(11))
    first, second = harness.runs(task)
    assert first["status"] == "killed" and "replaced by the run of the fire at" in first["error"]
    assert second["status"] == "running" and harness.skipped(task) == []


def test_after_downtime_one_run_for_the_latest_missed_fire_and_every_fire_accounted_for(harness):
    task = harness.schedule("*/5 * * * *", misfire_grace=600)
    harness.clock.set(minutes(122))  # the scheduler was not running for two hours
    harness.start()
    harness.run_until(minutes(131))
    runs, skipped = harness.runs(task), harness.skipped(task)
    assert [r["fire_time"] for r in runs] == [to_iso(minutes(m)) for m in (120, 125, 130)]
    assert [(s["fire_time"], s["last_fire_time"], s["count"]) for s in skipped] == [
        (to_iso(minutes(5)), to_iso(minutes(115)), 23)]
    assert len(runs) + sum(s["count"] for s in skipped) == 130 // 5


def test_a_missed_fire_older_than_the_grace_does_not_run(harness):
    task = harness.schedule("0 3 * * *", misfire_grace=3600)
    harness.clock.set(T0 + datetime.timedelta(hours=5))
    harness.start()
    harness.run_until(T0 + datetime.timedelta(hours=6))
    assert harness.runs(task) == []
    (skipped,) = harness.skipped(task)
    assert skipped["fire_time"] == to_iso(T0 + datetime.timedelta(hours=3)) and "misfire grace" in skipped["reason"]
    assert harness.store.get_task(task["id"])["next_fire_at"] == to_iso(T0 + datetime.timedelta(days=1, hours=3))


def test_failed_runs_are_retried_with_exponential_backoff(harness):
    task = harness.schedule("0 * * * *", retries=2, retry_backoff=10)
    harness.executor.outcome, harness.executor.duration = "failure", 5
    harness.start()
    harness.run_until(minutes(62))
    runs = harness.runs(task)
    assert [(r["fire_time"], r["attempt"], r["status"]) for r in runs] == [
        (to_iso(minutes(60)), 1, "failure"), (to_iso(minutes(60)), 2, "failure"), (to_iso(minutes(60)), 3, "failure")]
    starts = [from_iso(r["started_at"]) for r in runs]
    assert starts[1] - starts[0] == datetime.timedelta(seconds=15)  # ran 5 s, then backoff 10 s
    assert starts[2] - starts[1] == datetime.timedelta(seconds=25)  # ran 5 s, then backoff 20 s


def test_a_retry_that_would_come_after_the_next_fire_is_dropped(harness):
    task = harness.schedule("* * * * *", retries=3, retry_backoff=120)
    harness.executor.outcome, harness.executor.duration = "failure", 1
    harness.start()
    harness.run_until(minutes(3, 30))
    assert [(r["fire_time"], r["attempt"]) for r in harness.runs(task)] == [
        (to_iso(minutes(m)), 1) for m in (1, 2, 3)]


def test_a_retry_that_succeeds_ends_the_retries(harness):
    task = harness.schedule("0 * * * *", retries=3, retry_backoff=10)
    harness.executor.duration = 5
    harness.executor.outcome = "failure"
    harness.start()
    harness.run_until(minutes(60, 7))
    harness.executor.outcome = "success"
    harness.run_until(minutes(62))
    assert [(r["attempt"], r["status"]) for r in harness.runs(task)] == [(1, "failure"), (2, "success")]


def test_a_fall_back_night_gives_one_run_of_a_daily_job_in_the_repeated_hour(tmp_path):
    ny = zoneinfo.ZoneInfo("America/New_York")
    h = Harness(tmp_path, start=datetime.datetime(2024, 11, 2, 12, 0, tzinfo=ny))
    try:
        task = h.schedule("30 1 * * *", tz="America/New_York")
        h.start()
        h.run_until(datetime.datetime(2024, 11, 3, 12, 0, tzinfo=ny))
        (run,) = h.runs(task)
        assert from_iso(run["fire_time"]) == datetime.datetime(2024, 11, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT
    finally:
        h.close()


def test_kill_stops_the_running_run_and_the_task_fires_no_more(harness):
    task = harness.schedule("*/5 * * * *")
    harness.executor.duration = 3600
    harness.start()
    harness.run_until(minutes(6))
    assert control.request_kill(harness.store, task["id"])["status"] == "pending_kill"
    assert control.kill_requested(harness.store, task["id"])
    harness.run_until(minutes(30))
    (run,) = harness.runs(task)
    assert run["status"] == "killed" and run["error"] == "killed on request"
    task = harness.store.get_task(task["id"])
    assert task["status"] == "killed" and task["next_fire_at"] is None
    with pytest.raises(Exception, match="already ended"):
        control.request_kill(harness.store, task["id"])


def test_a_scheduled_task_with_no_scheduler_is_killed_at_once(harness):
    task = harness.schedule("*/5 * * * *")
    assert control.request_kill(harness.store, task["id"])["status"] == "killed"


def test_pause_stops_fires_and_resume_does_not_catch_up(harness):
    task = harness.schedule("*/5 * * * *")
    harness.start()
    harness.run_until(minutes(6))
    control.pause_task(harness.store, task["id"])
    harness.run_until(minutes(32))
    resumed = control.resume_task(harness.store, task["id"], now=harness.clock.now())
    assert resumed["next_fire_at"] == to_iso(minutes(35))
    harness.run_until(minutes(36))
    assert [r["fire_time"] for r in harness.runs(task)] == [to_iso(minutes(5)), to_iso(minutes(35))]
    assert harness.skipped(task) == []


def test_stop_lets_runs_finish_within_the_grace_then_kills_them(harness):
    short = harness.schedule("*/5 * * * *", name="short")
    long = harness.schedule("*/5 * * * *", name="long")
    harness.executor.durations = {"short": 20, "long": 3600}
    harness.start(grace=30)
    harness.run_until(minutes(5, 1))
    harness.scheduler.stop()
    harness.scheduler.shutdown()
    assert harness.runs(short)[0]["status"] == "success"
    run = harness.runs(long)[0]
    assert run["status"] == "killed" and "grace period of 30 s" in run["error"]
    assert harness.scheduler.running_runs == []


def test_a_second_scheduler_on_the_same_state_dir_is_refused(harness):
    parent = psutil.Process(os.getppid())
    harness.store.acquire_lease(parent.pid, parent.create_time(), os.uname().nodename, lambda lease: True)
    with pytest.raises(SchedulerBusy, match=f"another scheduler \\(pid {parent.pid}"):
        harness.start()
    harness.scheduler = None


def test_a_dead_schedulers_lease_is_taken_over(harness):
    harness.store.acquire_lease(2 ** 22 + 17, 0.0, os.uname().nodename, lambda lease: True)  # no such pid
    harness.start()
    assert harness.store.get_lease()["pid"] == os.getpid()


def test_restart_marks_lost_runs_failed_and_reconsiders_a_claimed_fire_that_never_started(harness):
    lost_task = harness.schedule("*/5 * * * *", name="lost")
    claimed_task = harness.schedule("*/5 * * * *", name="claimed")
    lost = harness.store.create_run(lost_task["id"], fire_time=to_iso(minutes(5)), attempt=1)
    harness.store.claim_fire(lost_task["id"], to_iso(minutes(5)), to_iso(minutes(10)), to_iso(minutes(5)))
    # the crash came after this claim, before its run row
    harness.store.claim_fire(claimed_task["id"], to_iso(minutes(5)), to_iso(minutes(10)), to_iso(minutes(5)))
    harness.clock.set(minutes(6))
    harness.start()
    assert harness.store.get_run(lost["id"])["status"] == "failure"
    assert harness.store.get_run(lost["id"])["error"] == f"{LOST_RUN}; no sink committed, so nothing was written"
    harness.run_until(minutes(11))
    assert [r["fire_time"] for r in harness.runs(lost_task)] == [to_iso(minutes(5)), to_iso(minutes(10))]
    assert [r["fire_time"] for r in harness.runs(claimed_task)] == [to_iso(minutes(5)), to_iso(minutes(10))]
    assert harness.store.get_task(claimed_task["id"])["claimed_fire_at"] is None


def test_run_fires_until_stopped_and_releases_the_lease(harness):
    task = harness.schedule("*/5 * * * *")
    scheduler = Scheduler(harness.store, harness.executor, harness.clock, idle_seconds=3600, poll_seconds=1)
    original_tick = scheduler.tick

    def tick():
        if harness.clock.now() >= minutes(16):
            scheduler.stop()
        return original_tick()

    scheduler.tick = tick
    scheduler.run()
    assert [r["fire_time"] for r in harness.runs(task)] == [to_iso(minutes(m)) for m in (5, 10, 15)]
    assert harness.store.get_lease() is None


def test_an_error_in_the_loop_kills_the_runs_it_watches(harness):
    task = harness.schedule("*/5 * * * *")
    harness.executor.duration = 3600
    scheduler = Scheduler(harness.store, harness.executor, harness.clock, idle_seconds=3600, poll_seconds=1)
    original_tick = scheduler.tick

    def tick():
        if harness.clock.now() >= minutes(6):
            raise RuntimeError("store went away")
        return original_tick()

    scheduler.tick = tick
    with pytest.raises(RuntimeError):
        scheduler.run()
    (run,) = harness.runs(task)
    assert run["status"] == "killed" and "store went away" in run["error"]
    assert harness.store.get_lease() is None
