"""Cron fire times, pure: time is an argument, never read. DST changes in several zones."""

import datetime
from zoneinfo import ZoneInfo

import pytest

from orchzip.runtime.scheduler.trigger import CronTrigger, InvalidSchedule

UTC = datetime.timezone.utc


def fires(expr, tz, start, until):
    """Every fire of ``expr`` in ``tz`` after ``start`` up to ``until`` (local wall times given)."""
    zone = ZoneInfo(tz)
    trigger = CronTrigger(expr, tz)
    moment, end, out = start.replace(tzinfo=zone), until.replace(tzinfo=zone), []
    while True:
        moment = trigger.next_fire_time(moment)
        if moment > end:
            return out
        out.append(moment)


def local(moments, tz):
    return [m.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M%z") for m in moments]


D = datetime.datetime


@pytest.mark.parametrize("tz, day, expected", [
    # 02:30 does not exist: it fires once, at the first instant after the gap.
    ("America/New_York", D(2024, 3, 10), ["03-09 02:30-0500", "03-10 03:00-0400", "03-11 02:30-0400"]),
    ("Europe/Berlin", D(2024, 3, 31), ["03-30 02:30+0100", "03-31 03:00+0200", "04-01 02:30+0200"]),
])
def test_a_daily_time_inside_the_spring_forward_gap_fires_once_right_after_the_gap(tz, day, expected):
    got = fires("30 2 * * *", tz, day - datetime.timedelta(days=1), day + datetime.timedelta(days=1, hours=12))
    assert local(got, tz) == expected


@pytest.mark.parametrize("tz, day, hour", [
    ("America/New_York", D(2024, 11, 3), 1),
    ("Europe/Berlin", D(2024, 10, 27), 2),
    ("Australia/Sydney", D(2024, 4, 7), 2),
])
def test_a_daily_time_in_the_repeated_fall_back_hour_fires_once(tz, day, hour):
    got = fires(f"30 {hour} * * *", tz, day - datetime.timedelta(hours=12), day + datetime.timedelta(hours=20))
    assert len(got) == 1
    assert got[0].astimezone(ZoneInfo(tz)).hour == hour
    # the first occurrence: the offset before the change
    before = (got[0] - datetime.timedelta(hours=2)).astimezone(ZoneInfo(tz)).utcoffset()
    assert got[0].astimezone(ZoneInfo(tz)).utcoffset() == before


@pytest.mark.parametrize("tz, day", [
    ("America/New_York", D(2024, 11, 3)),
    ("Europe/Berlin", D(2024, 10, 27)),
])
def test_an_every_hour_schedule_keeps_its_real_interval_through_the_repeated_hour(tz, day):
    got = fires("*/15 * * * *", tz, day, day + datetime.timedelta(hours=5))
    gaps = {b - a for a, b in zip(got, got[1:])}
    assert gaps == {datetime.timedelta(minutes=15)}
    assert len(got) == 6 * 4  # 5 wall hours span 6 real hours on that day


@pytest.mark.parametrize("tz, day", [
    ("America/New_York", D(2024, 3, 10)),
    ("Europe/Berlin", D(2024, 3, 31)),
    ("Australia/Lord_Howe", D(2024, 10, 6)),  # a 30-minute change
])
def test_fires_in_the_spring_forward_gap_collapse_into_one_and_none_repeats(tz, day):
    got = fires("*/15 * * * *", tz, day, day + datetime.timedelta(hours=5))
    assert len(got) == len(set(got))
    assert all(b > a for a, b in zip(got, got[1:]))
    gaps = [b - a for a, b in zip(got, got[1:])]
    assert max(gaps) == datetime.timedelta(minutes=15)  # the gap's fires are not skipped
    walls = [g.astimezone(ZoneInfo(tz)) for g in got]
    assert all(w.minute % 15 == 0 for w in walls)


def test_fire_times_are_utc_and_strictly_after_the_given_time():
    trigger = CronTrigger("*/5 * * * *")
    after = D(2024, 1, 1, 0, 5, tzinfo=UTC)
    nxt = trigger.next_fire_time(after)
    assert nxt == D(2024, 1, 1, 0, 10, tzinfo=UTC) and nxt.utcoffset() == datetime.timedelta(0)
    # an aware time in another zone means the same instant
    assert trigger.next_fire_time(after.astimezone(ZoneInfo("Asia/Kolkata"))) == nxt


def test_a_sixth_field_is_seconds_and_comes_first():
    trigger = CronTrigger("*/2 * * * * *")
    start = D(2024, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert trigger.next_fire_time(start) == start + datetime.timedelta(seconds=2)
    assert CronTrigger("30 0 12 * * *").next_fire_time(start) == D(2024, 1, 1, 12, 0, 30, tzinfo=UTC)


def test_schedules_are_read_in_their_zone():
    trigger = CronTrigger("0 9 * * mon-fri", "Asia/Kolkata")
    got = trigger.next_fire_time(D(2024, 1, 5, 12, 0, tzinfo=UTC))  # a Friday
    assert got == D(2024, 1, 8, 3, 30, tzinfo=UTC)  # Monday 09:00 IST


@pytest.mark.parametrize("expr, message", [
    ("* * *", "has 3 fields"),
    ("* * * * * * *", "has 7 fields"),
    ("61 * * * *", "out of range"),
    ("0 0 30 2 *", "never matches"),
    ("every day", "invalid cron string"),
    ("", "has 0 fields"),
])
def test_invalid_cron_strings_are_refused_with_one_line(expr, message):
    with pytest.raises(InvalidSchedule) as err:
        CronTrigger(expr)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(InvalidSchedule, match="unknown time zone 'Mars/Olympus'"):
        CronTrigger("* * * * *", "Mars/Olympus")
