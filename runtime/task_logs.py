"""A run's log: every line in Wallaroo's form, written as the task prints it, bounded in size.

Each stored line is ``<RFC3339 UTC time, ns>Z <stdout|stderr> <F|P> <text>``, as Wallaroo's
``get_logs_for_run`` returns them (the container runtime's log form, which the wallaroo SDK
parses): ``F`` marks a full line, ``P`` a piece of a line longer than ``MAX_LINE_BYTES``
(the next piece follows). Wallaroo's own framing lines open and close each run.

The task's stdout and stderr are pipes, each drained by a thread of its own (a *pump*) that
writes what arrives at once, so a running task's log can be read while it grows.

A log never grows past its cap (``--log-max-bytes`` / ``ORCHZIP_LOG_MAX_BYTES``, 16 MiB by
default): it keeps the first quarter of the cap (how the run started) and the most recent
lines (how it is going or how it ended), with one line in between saying how much was left
out. When the file reaches the cap, it is rewritten as head + that line + the newer half of
the tail and atomically moved into place, so a reader never sees a half-written file.
"""

import collections
import os
import re
import threading
import time

from orchzip.errors import ConfigError

__all__ = [
    "TaskLog", "LogLine", "parse_line", "format_line", "timestamp", "resolve_max_bytes", "read_lines",
    "last_error_line", "is_framing", "SETTING_UP", "READY", "complete_line", "DEFAULT_MAX_BYTES", "MIN_MAX_BYTES",
]

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
MIN_MAX_BYTES = 64 * 1024
ENV_MAX_BYTES = "ORCHZIP_LOG_MAX_BYTES"
# A longer line is stored as several pieces flagged P, as the container runtime does.
MAX_LINE_BYTES = 16 * 1024
# What `orchzip run` may hold of output it has not shown yet (it looks ten times a second);
# older output is dropped from the display, never from the log.
MAX_PENDING_OUTPUT = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024

# Wallaroo's framing lines, in its words.
SETTING_UP = "WALLAROO: Setting up task run..."
READY = "Task environment ready. Running..."


COMPLETE = "Task run complete. Status: "


def complete_line(status):
    return f"{COMPLETE}{status}"


def is_framing(text):
    """Whether ``text`` is one of Wallaroo's framing lines."""
    return text.rstrip("\n") in (SETTING_UP, READY) or text.startswith(COMPLETE)


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def resolve_max_bytes(value=None):
    """The log cap in bytes: ``value`` (e.g. ``16777216``, ``"16MiB"``, ``"512k"``), else
    ``$ORCHZIP_LOG_MAX_BYTES``, else 16 MiB."""
    source = "--log-max-bytes"
    if value is None:
        value, source = os.environ.get(ENV_MAX_BYTES), ENV_MAX_BYTES
    if value is None or value == "":
        return DEFAULT_MAX_BYTES
    match = _SIZE.match(str(value))
    if not match:
        raise ConfigError(f"{source} must be a size in bytes such as 16777216, 16MiB or 512k, not {value!r}")
    size = int(match.group(1)) * _UNITS[(match.group(2) or "")[:1].lower()]
    if size < MIN_MAX_BYTES:
        raise ConfigError(f"{source} must be at least {MIN_MAX_BYTES} bytes (64k), not {value!r}")
    return size


# -- the line form ------------------------------------------------------------------------------
_second_cache = [None, ""]


def timestamp(ns=None):
    """RFC 3339 UTC with nanoseconds, as Wallaroo's logs carry: ``2024-12-09T21:21:34.034571374Z``."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    if _second_cache[0] != seconds:  # one strftime per second, however many lines
        _second_cache[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_second_cache[1]}.{fraction:09d}Z"


def format_line(stream, text, partial=False, ns=None):
    """One stored line (bytes, with its newline)."""
    return f"{timestamp(ns)} {stream} {'P' if partial else 'F'} {text}\n".encode("utf-8", "replace")


LogLine = collections.namedtuple("LogLine", "time stream partial text")
_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT[0-9:.]+Z) (stdout|stderr) ([FP]) ?(.*)$", re.S)


def parse_line(line):
    """A stored line as ``LogLine``; a line not in the form (a log of an older orchzip) is all text."""
    line = line.rstrip("\n")
    match = _LINE.match(line)
    if not match:
        return LogLine(None, None, False, line)
    return LogLine(match.group(1), match.group(2), match.group(3) == "P", match.group(4))


def read_lines(path, lines=None):
    """The stored lines of a log file (the last ``lines`` when given); [] when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            if lines:
                return [line.rstrip("\n") for line in collections.deque(fh, maxlen=lines)]
            return fh.read().splitlines()
    except FileNotFoundError:
        return []


def last_error_line(log_path, max_bytes=65536):
    """The text of the last line of the log that says what went wrong (an error or exception)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        text = parse_line(line).text.strip()
        if text.startswith("orchzip: error:"):
            return text[len("orchzip: error:"):].strip()
        if text and not text.startswith(("File ", "^", "~", "orchzip: log truncated")) \
                and ("Error" in text or "Exception" in text):
            return text
    return None


# -- writing ------------------------------------------------------------------------------------
class TaskLog:
    """The log file of one run, bounded to ``max_bytes``; safe to write from several threads.

    :param path: the log file (created owner-only; appended to if it exists).
    :param max_bytes: the cap; see the module docstring for what is kept.
    :param on_truncated: called with :meth:`stats` (from the writing thread) each time lines
        are left out, so the run's record can say so while it still runs.
    """

    def __init__(self, path, max_bytes=None, on_truncated=None):
        self.path = path
        self.max_bytes = max_bytes or resolve_max_bytes()
        self.head_max = self.max_bytes // 4
        # Room for the truncation line, whatever its numbers.
        self.tail_max = self.max_bytes - self.head_max - 1024
        self.on_truncated = on_truncated
        self._lock = threading.Lock()
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._fh = os.fdopen(fd, "ab", buffering=0)
        self._size = os.fstat(fd).st_size
        self._head_end = self._size if self._size <= self.head_max else None
        self._head_full = self._size > self.head_max
        self._tail_start = None  # where the kept tail begins, once something was left out
        self.total_bytes = self._size
        self.dropped_bytes = 0
        self.dropped_lines = 0
        self._pumps = []
        self._pending = collections.deque()
        self._pending_bytes = 0
        self._pending_dropped = 0
        self._closed = False

    # -- what the runner writes itself
    def write(self, stream, text, shown=True):
        """Write ``text`` (one or more lines) as full lines of ``stream``.

        :param shown: False for lines a caller shows its own way (an environment build's
            progress): kept in the log, left out of :meth:`take_output`.
        """
        ns = time.time_ns()
        lines = text.splitlines() or [""]
        self._append([(stream, line, False) for line in lines], ns, shown)

    def frame(self, text):
        """One of Wallaroo's framing lines (on stdout, as Wallaroo's own are)."""
        self.write("stdout", text)

    # -- the task's output
    def pump(self, pipe, stream):
        """Drain ``pipe`` (the task's ``stream``) into the log on a thread of its own until EOF."""
        thread = threading.Thread(target=self._pump, args=(pipe, stream), name=f"log-{stream}", daemon=True)
        self._pumps.append((thread, pipe))
        thread.start()
        return thread

    def _pump(self, pipe, stream):
        fd = pipe.fileno()
        partial = b""
        try:
            while True:
                # os.read returns whatever has arrived: each line is stored as soon as it is printed.
                chunk = os.read(fd, READ_CHUNK)
                if not chunk:
                    break
                pieces, partial = _split(partial + chunk)
                if pieces:
                    self._append([(stream, p.decode("utf-8", "replace"), part) for p, part in pieces], time.time_ns())
        except (OSError, ValueError):
            pass  # the pipe was closed under us: the run is over
        finally:
            if partial:  # a last line without a newline
                self._append([(stream, partial.decode("utf-8", "replace"), False)], time.time_ns())
            try:
                pipe.close()
            except OSError:
                pass

    def drain(self, timeout=5.0):
        """Wait until the task's output has all been stored (EOF on every pipe).

        A process that escaped the run's process group may hold a pipe open: after
        ``timeout`` seconds the log stops waiting for it.
        """
        deadline = time.monotonic() + timeout
        for thread, _ in self._pumps:
            thread.join(max(0.0, deadline - time.monotonic()))
        return all(not thread.is_alive() for thread, _ in self._pumps)

    def finish(self, status, timeout=5.0):
        """Store what is left of the output, the closing framing line, and close; returns :meth:`stats`."""
        if not self.drain(timeout):
            self.write("stderr", f"orchzip: output after {timeout:g} s past the end of the run is not logged "
                       "(a process the task started still holds its output open)")
        self.frame(complete_line(status))
        self.close()
        return self.stats()

    def close(self):
        with self._lock:
            if not self._closed:
                self._closed = True
                self._fh.close()

    def stats(self):
        """``log_bytes`` (all the run printed, in stored form) and ``log_dropped_bytes`` (left out)."""
        return {"log_bytes": self.total_bytes, "log_dropped_bytes": self.dropped_bytes}

    def take_output(self):
        """``(stream, text)`` lines written since the last call (the oldest dropped beyond 4 MiB)."""
        with self._lock:
            lines = list(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            dropped, self._pending_dropped = self._pending_dropped, 0
        if dropped:
            lines.insert(0, ("stderr", f"orchzip: {dropped} lines not shown here; see them with: orchzip runs logs\n"))
        return lines

    # -- the cap
    def _append(self, lines, ns, shown=True):
        truncated = False
        with self._lock:
            if self._closed:
                return
            out = []
            for stream, text, partial in lines:
                data = format_line(stream, text, partial, ns)
                self.total_bytes += len(data)
                if shown:
                    self._remember(stream, text, partial)
                if self._size + len(data) > self.max_bytes:
                    _write_all(self._fh, b"".join(out))
                    out = []
                    self._compact()
                    truncated = True
                out.append(data)
                self._size += len(data)
                if not self._head_full:
                    if self._size <= self.head_max:
                        self._head_end = self._size
                    else:
                        self._head_full = True
            _write_all(self._fh, b"".join(out))
        if truncated and self.on_truncated is not None:
            self.on_truncated(self.stats())

    def _remember(self, stream, text, partial):
        self._pending.append((stream, text if partial else text + "\n"))
        self._pending_bytes += len(text) + 1
        while self._pending_bytes > MAX_PENDING_OUTPUT and len(self._pending) > 1:
            self._pending_bytes -= len(self._pending.popleft()[1])
            self._pending_dropped += 1

    def _compact(self):
        """Rewrite the file as head + truncation line + the newer half of the tail."""
        with open(self.path, "rb") as fh:
            head = fh.read(self._head_end or 0)
            tail_start = self._tail_start if self._tail_start is not None else len(head)
            fh.seek(tail_start)
            tail = fh.read()
        cut = max(0, len(tail) - self.tail_max // 2)
        newline = tail.find(b"\n", cut - 1) if cut else -1
        cut = newline + 1 if cut else 0
        self.dropped_bytes += cut
        self.dropped_lines += tail.count(b"\n", 0, cut)
        marker = format_line(
            "stderr",
            f"orchzip: log truncated: {self.dropped_lines} lines ({_size(self.dropped_bytes)}) left out here; "
            f"a run's log keeps its first {_size(self.head_max)} and its most recent lines, "
            f"{_size(self.max_bytes)} in all (--log-max-bytes or {ENV_MAX_BYTES})",
        )
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            out.write(marker)
            out.write(tail[cut:])
        os.replace(tmp, self.path)
        self._fh.close()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._fh = os.fdopen(fd, "ab", buffering=0)
        self._tail_start = len(head) + len(marker)
        self._size = self._tail_start + len(tail) - cut


def _write_all(fh, data):
    view = memoryview(data)
    while view:
        view = view[fh.write(view):]


def _split(data):
    """Complete lines of ``data`` as ``(bytes, partial)`` pieces, and the unfinished rest."""
    pieces = []
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            break
        line = data[start:end]
        while len(line) > MAX_LINE_BYTES:
            pieces.append((line[:MAX_LINE_BYTES], True))
            line = line[MAX_LINE_BYTES:]
        pieces.append((line, False))
        start = end + 1
    rest = data[start:]
    while len(rest) > MAX_LINE_BYTES:
        pieces.append((rest[:MAX_LINE_BYTES], True))
        rest = rest[MAX_LINE_BYTES:]
    return pieces, rest


def _size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
