"""Firing policies, pure: overlap, coalesced misfires, retries with backoff."""

import datetime

import pytest

from orchzip.runtime.scheduler.policies import COUNT_LIMIT, decide_fires, decide_retry, retry_time
from orchzip.runtime.scheduler.trigger import CronTrigger

UTC = datetime.timezone.utc
T0 = datetime.datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
EVERY_5 = CronTrigger("*/5 * * * *")


def at(minutes, seconds=0):
    return T0 + datetime.timedelta(minutes=minutes, seconds=seconds)


def test_nothing_happens_before_the_next_fire():
    assert decide_fires(EVERY_5, at(5), at(4, 59)) is None


def test_an_on_time_fire_runs_and_the_next_fire_moves_on():
    d = decide_fires(EVERY_5, at(5), at(5, 0.3))
    assert d.run_fire == at(5) and d.skipped == () and d.next_fire == at(10) and not d.replace


@pytest.mark.parametrize("overlap, runs, replace, skipped", [
    ("forbid", False, False, 1),
    ("allow", True, False, 0),
    ("replace", True, True, 0),
])
def test_a_fire_while_the_previous_run_runs_follows_the_overlap_policy(overlap, runs, replace, skipped):
    d = decide_fires(EVERY_5, at(5), at(5, 0.1), running=True, overlap=overlap)
    assert (d.run_fire is not None) == runs and d.replace == replace and len(d.skipped) == skipped
    if skipped:
        assert d.skipped[0][:3] == (at(5), at(5), 1) and "overlap" in d.skipped[0][3]
    assert d.next_fire == at(10)


def test_missed_fires_after_downtime_give_one_run_for_the_latest_and_one_skipped_record():
    d = decide_fires(EVERY_5, at(5), at(122), misfire_grace=600)
    assert d.run_fire == at(120)
    assert d.skipped == ((at(5), at(115), 23, d.skipped[0][3]),)
    assert "coalesced" in d.skipped[0][3]
    assert d.next_fire == at(125)


def test_a_latest_missed_fire_older_than_the_grace_does_not_run():
    d = decide_fires(EVERY_5, at(5), at(122), misfire_grace=60)
    assert d.run_fire is None
    assert [s[:3] for s in d.skipped] == [(at(5), at(115), 23), (at(120), at(120), 1)]
    assert "more than the misfire grace of 60 s" in d.skipped[1][3]


def test_a_zero_grace_still_runs_a_fire_seen_within_the_loops_tolerance():
    assert decide_fires(EVERY_5, at(5), at(5, 0.8), misfire_grace=0).run_fire == at(5)
    assert decide_fires(EVERY_5, at(5), at(5, 3), misfire_grace=0).run_fire is None


class CountingTrigger:
    """A trigger that counts the fire times it is asked for: the work a decision costs."""

    def __init__(self, trigger):
        self.trigger, self.calls = trigger, 0

    def next_fire_time(self, after):
        self.calls += 1
        return self.trigger.next_fire_time(after)


def test_a_week_of_missed_per_second_fires_is_decided_with_bounded_work():
    every_second = CountingTrigger(CronTrigger("* * * * * *"))
    d = decide_fires(every_second, T0, T0 + datetime.timedelta(days=7, seconds=0.5), misfire_grace=10)
    # A week holds 604,800 fires; the decision walks at most COUNT_LIMIT of them plus a short search back.
    assert every_second.calls < COUNT_LIMIT + 1000
    assert d.run_fire == T0 + datetime.timedelta(days=7)
    first, last, count, reason = d.skipped[0]
    assert (first, last) == (T0, T0 + datetime.timedelta(days=7, seconds=-1))
    assert count == COUNT_LIMIT - 1 and "or more" in reason


def test_retries_back_off_exponentially_and_stop_after_the_limit():
    ended = at(7)
    assert retry_time("failure", 1, 3, 10, ended) == ended + datetime.timedelta(seconds=10)
    assert retry_time("timed_out", 2, 3, 10, ended) == ended + datetime.timedelta(seconds=20)
    assert retry_time("failure", 3, 3, 10, ended) == ended + datetime.timedelta(seconds=40)
    assert retry_time("failure", 4, 3, 10, ended) is None
    assert retry_time("failure", 12, 20, 10, ended) == ended + datetime.timedelta(hours=1)  # capped


@pytest.mark.parametrize("status", ["success", "killed"])
def test_successful_and_killed_runs_are_not_retried(status):
    assert retry_time(status, 1, 3, 10, at(7)) is None


def test_no_retries_by_default():
    assert retry_time("failure", 1, 0, 10, at(7)) is None


def test_a_retry_waits_starts_or_gives_way_to_the_next_fire():
    assert decide_retry(at(7), at(10), at(6)) == "wait"
    assert decide_retry(at(7), at(10), at(7)) == "start"
    assert decide_retry(at(11), at(10), at(7)) == "drop"
    assert decide_retry(at(7), at(10), at(7), running=True, overlap="forbid") == "drop"
    assert decide_retry(at(7), at(10), at(7), running=True, overlap="allow") == "start"
