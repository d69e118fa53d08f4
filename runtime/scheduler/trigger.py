"""When a scheduled task fires: 5-field cron strings in a time zone, pure (no clock reads).

Cron matching is croniter's; this module owns what croniter leaves to chance, the mapping
of *wall times* in a zone to *instants* across daylight-saving changes:

- A wall time that does not exist (the hour skipped when clocks go forward) fires at the
  first instant after the gap (e.g. 02:30 in New York on the spring-forward day fires at
  03:00 EDT). Several wall times in one gap collapse into that one fire: no skip, no burst.
- A wall time that occurs twice (the hour repeated when clocks go back) fires once, at its
  first occurrence. A schedule whose hour field is ``*`` (every hour) is a clock interval
  rather than a time of day, so it keeps firing through the second pass too (``*/15 * * *
  *`` fires every 15 real minutes across the change), as Vixie cron does.

A 6th field is seconds and comes FIRST (``*/2 * * * * *`` is every 2 seconds), as in
Quartz and Spring; croniter would otherwise read a trailing 6th field as seconds. Wallaroo
itself takes 5 fields; seconds exist for tests and local experiments.
"""

import abc
import datetime
import zoneinfo

from croniter import croniter, CroniterError

from orchzip.errors import ConfigError

__all__ = ["Trigger", "CronTrigger", "InvalidSchedule", "resolve_zone", "UTC"]

UTC = datetime.timezone.utc


class InvalidSchedule(ConfigError):
    """A cron string or time zone that cannot be scheduled."""


class Trigger(abc.ABC):
    """When something fires. Pure: the current time is always an argument."""

    @abc.abstractmethod
    def next_fire_time(self, after):
        """The first fire time strictly after ``after`` (an aware datetime), or None if never.

        Returned in UTC: aware datetimes that share a zone compare by wall time and ignore
        ``fold``, which would confuse the two passes of a repeated hour.
        """


def resolve_zone(name):
    """The ``ZoneInfo`` for an IANA name such as ``Europe/Berlin``; refuses unknown names."""
    if not name or not isinstance(name, str):
        raise InvalidSchedule("a time zone needs a name such as UTC or Europe/Berlin")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"unknown time zone {name!r}; give an IANA name such as UTC, Europe/Berlin or America/New_York"
        ) from None


class CronTrigger(Trigger):
    """A 5-field cron string (or 6 with leading seconds) evaluated in time zone ``tz``.

    :param expr: e.g. ``"*/5 * * * *"``; ``@daily`` style nicknames are accepted too.
    :param tz: an IANA zone name or a ``tzinfo``; UTC when None.
    """

    def __init__(self, expr, tz=None):
        self.expr = " ".join(str(expr or "").split())
        self.tz = resolve_zone(tz) if isinstance(tz, str) else (tz or UTC)
        self.has_seconds = len(self.expr.split()) == 6
        self._check()
        hours = croniter(self.expr, datetime.datetime(2000, 1, 1), second_at_beginning=self.has_seconds).expanded[1]
        self.every_hour = hours == ["*"] or len(hours) == 24

    def _check(self):
        fields = len(self.expr.split())
        if not self.expr.startswith("@") and fields not in (5, 6):
            raise InvalidSchedule(
                f"invalid cron string {self.expr!r}: it has {fields} fields; give 5 "
                "(minute hour day-of-month month day-of-week, e.g. \"*/5 * * * *\") or 6 with seconds first"
            )
        try:
            croniter(self.expr, datetime.datetime(2000, 1, 1), second_at_beginning=self.has_seconds).get_next(
                datetime.datetime
            )
        except CroniterError as err:
            reason = "it never matches a date" if "find next date" in str(err) else str(err).rstrip(".")
            raise InvalidSchedule(f"invalid cron string {self.expr!r}: {reason}") from None

    def __repr__(self):
        return f"CronTrigger({self.expr!r}, {str(self.tz)!r})"

    def next_fire_time(self, after):
        if after.tzinfo is None:
            raise ValueError("next_fire_time needs an aware datetime")
        after = after.astimezone(UTC)
        local = after.astimezone(self.tz)
        start = local.replace(tzinfo=None)
        if self.every_hour and local.fold == 0 and _is_ambiguous(start, self.tz):
            # ``after`` is in the first pass of a repeated hour: wall times before it come
            # round again in the second pass, so scan from where the second pass begins.
            start -= local.utcoffset() - local.replace(fold=1).utcoffset()
        walls = croniter(self.expr, start, second_at_beginning=self.has_seconds)
        best = None
        while True:
            try:
                wall = walls.get_next(datetime.datetime)
            except CroniterError:
                return best
            instants = self._instants(wall)
            if best is not None and instants[0] > best:
                return best
            for instant in instants:
                if instant > after and (best is None or instant < best):
                    best = instant

    def _instants(self, wall):
        """The instants (in UTC) a matching wall time fires at, earliest first."""
        first, second = wall.replace(tzinfo=self.tz, fold=0), wall.replace(tzinfo=self.tz, fold=1)
        if not _exists(first):
            return [_gap_end(first, second)]
        if first.utcoffset() != second.utcoffset() and self.every_hour:
            return [first.astimezone(UTC), second.astimezone(UTC)]
        return [first.astimezone(UTC)]


def _exists(aware):
    return aware.astimezone(UTC).astimezone(aware.tzinfo).replace(tzinfo=None) == aware.replace(tzinfo=None)


def _is_ambiguous(wall, tz):
    first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
    return _exists(first) and first.utcoffset() != second.utcoffset()


def _gap_end(first, second):
    """The first instant after the gap that swallowed wall time ``first``/``second``."""
    tz = first.tzinfo
    low, high = sorted((first.astimezone(UTC), second.astimezone(UTC)))
    after_offset = high.astimezone(tz).utcoffset()
    # Zone transitions fall on whole seconds: bisect to the second.
    while high - low > datetime.timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0) if middle.microsecond else middle
        if middle.astimezone(tz).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    return high
