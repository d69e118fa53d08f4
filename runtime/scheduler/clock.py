"""The scheduler's sense of time, injectable so that tests never wait for real."""

import abc
import datetime
import threading

__all__ = ["Clock", "SystemClock", "FakeClock", "to_iso", "from_iso"]


def to_iso(moment):
    """A UTC timestamp as the store keeps it (sorts as text), or None."""
    if moment is None:
        return None
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds")


def from_iso(text):
    return None if not text else datetime.datetime.fromisoformat(text)


class Clock(abc.ABC):
    @abc.abstractmethod
    def now(self):
        """The current time, an aware UTC datetime."""

    @abc.abstractmethod
    def wait(self, event, seconds):
        """Block until ``event`` is set or ``seconds`` have passed; True if it was set."""


class SystemClock(Clock):
    def now(self):
        return datetime.datetime.now(datetime.timezone.utc)

    def wait(self, event, seconds):
        return event.wait(max(0.0, seconds))


class FakeClock(Clock):
    """A clock that moves only when told to; ``wait`` advances it instead of sleeping."""

    def __init__(self, start):
        self._now = start.astimezone(datetime.timezone.utc)
        self._lock = threading.Lock()

    def now(self):
        with self._lock:
            return self._now

    def advance(self, seconds):
        with self._lock:
            self._now += datetime.timedelta(seconds=seconds)

    def set(self, moment):
        with self._lock:
            self._now = moment.astimezone(datetime.timezone.utc)

    def wait(self, event, seconds):
        if event.is_set():
            return True
        self.advance(max(0.0, seconds))
        return False
