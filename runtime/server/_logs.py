"""A run's log as ``task/get_logs_for_run`` answers it: Wallaroo's log line form.

Wallaroo serves container log lines, ``<RFC3339 UTC time, ns> <stdout|stderr> <F|P> <text>``
(the SDK's log display parses the first token as a time and drops the next two), framed by its
own lines: setting up, environment ready, run complete with the run's status.

A log already written in that form (the runner's, see ``runtime/task_logs.py``) is served as
it is. A plain log (of a run recorded before the runner wrote that form: stdout and stderr in
one file, without times) is put in that form here: its lines carry the
time the run started, the closing line the time it ended, all on ``stdout``.
"""

import datetime
import re

WALLAROO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) [FP] ")
SETTING_UP = "WALLAROO: Setting up task run..."
READY = "Task environment ready. Running..."
COMPLETE = "Task run complete. Status: {status}"


def rfc3339(iso):
    """``iso`` (any ISO 8601 time with an offset) as UTC with nanoseconds, as Wallaroo's logs have it."""
    when = datetime.datetime.fromisoformat(iso).astimezone(datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond * 1000:09d}Z"


def _first_line(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline()
    except (FileNotFoundError, TypeError):
        return ""


def wallaroo_log_lines(run, lines=None):
    """The run's log lines in Wallaroo's form; the last ``lines`` of them when given (0: all)."""
    from orchzip.runtime.task_logs import read_lines
    path = run.get("log_path")
    if WALLAROO_LINE.match(_first_line(path)):
        return read_lines(path, lines)  # written in Wallaroo's form: only the tail asked for is read
    framed = _frame(run, read_lines(path) if path else [])
    return framed[-lines:] if lines else framed


def _frame(run, raw):
    started = rfc3339(run.get("started_at") or run["created_at"])
    out = [f"{rfc3339(run['created_at'])} stdout F {SETTING_UP}"]
    if run.get("started_at"):
        out.append(f"{started} stdout F {READY}")
    out.extend(f"{started} stdout F {line}" for line in raw)
    if not raw and run.get("error"):
        out.append(f"{started} stderr F orchzip: error: {run['error']}")
    if run["status"] != "running":
        ended = rfc3339(run.get("ended_at") or run["updated_at"])
        out.append(f"{ended} stdout F {COMPLETE.format(status=run['status'])}")
    return out


def text_of(line):
    """The text of one Wallaroo log line (what main.py printed), or the line itself."""
    match = WALLAROO_LINE.match(line)
    return line[match.end():] if match else line


__all__ = ["wallaroo_log_lines", "text_of", "rfc3339", "WALLAROO_LINE"]
