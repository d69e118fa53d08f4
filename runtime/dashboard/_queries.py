"""What the dashboard shows, read from the store in bounded, indexed queries.

Every list is a page (LIMIT/OFFSET over an index), every chart reads at most a fixed number
of recent runs, and counts per task are grouped over the ``runs_by_task_status`` index, so a
page costs about the same with ten runs or a hundred thousand.
"""

import hashlib
import json
import os
import re
import threading

FINISHED = ("success", "failure", "killed", "timed_out")
# A run's duration in seconds, from its recorded start and end (UTC ISO strings).
DURATION_SQL = "(julianday(ended_at) - julianday(started_at)) * 86400.0"
RUN_COLUMNS = (f"id, task_id, status, created_at, started_at, ended_at, exit_code, rows_read, rows_inferred, "
               f"rows_written, error, fire_time, attempt, {DURATION_SQL} AS duration")


def count_tasks(store, kind=None):
    sql, params = "SELECT count(*) AS n FROM tasks", ()
    if kind:
        sql, params = sql + " WHERE kind = ?", (kind,)
    return store.select(sql, params)[0]["n"]


def task_rows(store, kind=None, offset=0, limit=50):
    """One page of tasks, newest first, each with its run counts, last run and recent statuses."""
    sql, params = "SELECT * FROM tasks", []
    if kind:
        sql += " WHERE kind = ?"
        params.append(kind)
    sql += " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
    tasks = store.select(sql, (*params, int(limit), int(offset)))
    counts = status_counts(store, [t["id"] for t in tasks])
    for task in tasks:
        _decorate(store, task, counts.get(task["id"], {}))
    return tasks


def get_task(store, task_id):
    task = store.get_task(task_id)
    return _decorate(store, task, status_counts(store, [task["id"]]).get(task["id"], {}))


def _decorate(store, task, counts):
    if isinstance(task.get("args"), str):
        task["args"] = json.loads(task["args"] or "{}")
    task["counts"] = counts
    finished = sum(counts.get(s, 0) for s in FINISHED)
    task["runs_total"] = sum(counts.values())
    task["runs_finished"] = finished
    task["success_rate"] = counts.get("success", 0) / finished if finished else None
    task["recent"] = store.select(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE task_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 20",
        (task["id"],))[::-1]
    task["last_run"] = task["recent"][-1] if task["recent"] else None
    return task


def status_counts(store, task_ids):
    """``{task_id: {status: count}}`` for the given tasks."""
    if not task_ids:
        return {}
    marks = ", ".join("?" * len(task_ids))
    rows = store.select(f"SELECT task_id, status, count(*) AS n FROM runs WHERE task_id IN ({marks}) "
                        "GROUP BY task_id, status", tuple(task_ids))
    counts = {}
    for row in rows:
        counts.setdefault(row["task_id"], {})[row["status"]] = row["n"]
    return counts


def recent_runs(store, task_id, limit):
    """The task's last ``limit`` runs, oldest first (what the charts draw)."""
    rows = store.select(f"SELECT {RUN_COLUMNS} FROM runs WHERE task_id = ? ORDER BY created_at DESC, rowid DESC "
                        "LIMIT ?", (task_id, int(limit)))
    return rows[::-1]


def count_runs(store, task_id=None, status=None):
    where, params = _run_filter(task_id, status)
    return store.select(f"SELECT count(*) AS n FROM runs{where}", params)[0]["n"]


def run_rows(store, task_id=None, status=None, offset=0, limit=50):
    """One page of runs, newest first, with their task's name."""
    where, params = _run_filter(task_id, status)
    rows = store.select(f"SELECT {RUN_COLUMNS} FROM runs{where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                        (*params, int(limit), int(offset)))
    names = _task_names(store, {r["task_id"] for r in rows})
    for row in rows:
        row["task_name"] = names.get(row["task_id"])
    return rows


def _run_filter(task_id, status):
    clauses, params = [], []
    if task_id:
        clauses.append("task_id = ?")
        params.append(task_id)
    if status:
        clauses.append("status = ?")
        params.append(status)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _task_names(store, task_ids):
    if not task_ids:
        return {}
    ids = sorted(task_ids)
    rows = store.select(f"SELECT id, name FROM tasks WHERE id IN ({', '.join('?' * len(ids))})", tuple(ids))
    return {r["id"]: r["name"] for r in rows}


# Parts of an error message that differ from run to run: ids, paths' numbers, amounts.
_VARYING = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+(\.\d+)?", re.I)


def failure_groups(store, task_id, limit=2000):
    """The task's failed runs (of the last ``limit``) grouped by their reason, most frequent first.

    Reasons that differ only in ids or numbers ("timed out after 3 s" / "after 5 s") are one
    group; each group shows its latest message and run.
    """
    rows = store.select("SELECT id, status, error, created_at FROM runs WHERE task_id = ? "
                        "AND status IN ('failure', 'timed_out', 'killed') ORDER BY created_at DESC, rowid DESC LIMIT ?",
                        (task_id, int(limit)))
    groups = {}
    for row in rows:
        message = (row["error"] or "").strip() or f"{row['status']} (no message recorded)"
        key = (row["status"], _VARYING.sub("#", message))
        group = groups.get(key)
        if group is None:
            groups[key] = {"status": row["status"], "message": message, "count": 1, "last_at": row["created_at"],
                           "last_run": row["id"], "first_at": row["created_at"]}
        else:
            group["count"] += 1
            group["first_at"] = row["created_at"]
    return sorted(groups.values(), key=lambda g: (-g["count"], g["last_at"]))


def get_run(store, run_id):
    run = store.get_run(run_id)
    extra = store.select(f"SELECT {DURATION_SQL} AS duration FROM runs WHERE id = ?", (run["id"],))
    run["duration"] = extra[0]["duration"]
    return run


def live_progress(run):
    """The last row counts a running task reported (its events file), or {}."""
    if not run.get("log_path"):
        return {}
    path = os.path.join(os.path.dirname(run["log_path"]), "events.jsonl")
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 65536))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if isinstance(event, dict) and "rows_read" in event:
            return {k: event.get(k) for k in ("rows_read", "rows_inferred", "rows_written")}
    return {}


def read_log_chunk(run, offset=None, max_bytes=256 * 1024):
    """``(text, next_offset, truncated)``: the log from byte ``offset`` (None: its last ``max_bytes``).

    Reading stops at the last complete line so that a line is never split between two reads.
    """
    path = run.get("log_path")
    if not path or not os.path.exists(path):
        return "", 0, False
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        truncated = False
        if offset is None or offset > size:
            offset = max(0, size - max_bytes)
            truncated = offset > 0
        fh.seek(offset)
        data = fh.read(max_bytes)
    if truncated:
        data = data[data.find(b"\n") + 1:]  # start at a line's beginning
        offset = size - len(data)
    end = data.rfind(b"\n") + 1
    if end == 0 and len(data) < max_bytes:
        return "", offset, truncated  # only a partial line so far: wait for its end
    if end == 0:
        end = len(data)  # one line longer than a whole chunk: give it in pieces
    return display_log(data[:end].decode("utf-8", "replace")), offset + end, truncated


def display_log(text):
    """Stored log lines as a reader wants them: ``HH:MM:SS | text`` (``!`` marks stderr).

    The stored form (time with nanoseconds, stream, full/partial flag; see ``task_logs``) is
    for the wallaroo SDK; pieces of one long line are joined again. Lines of logs written
    before that form are shown as they are.
    """
    from orchzip.runtime.task_logs import parse_line
    out, continuing = [], False
    for raw in text.splitlines():
        line = parse_line(raw)
        if line.time is None:
            out.append(line.text + "\n")
            continuing = False
            continue
        prefix = "" if continuing else f"{line.time[11:19]} {'!' if line.stream == 'stderr' else '|'} "
        out.append(prefix + line.text + ("" if line.partial else "\n"))
        continuing = line.partial
    return "".join(out)


_sha_cache = {}
_sha_lock = threading.Lock()


def zip_sha256(store, task):
    """The SHA-256 of the zip the task runs: the uploaded orchestration's, or hashed (and cached)."""
    if task.get("orch_id"):
        rows = store.select("SELECT sha FROM orchestrations WHERE id = ?", (task["orch_id"],))
        if rows:
            return rows[0]["sha"]
    path = task.get("source")
    try:
        stat = os.stat(path)
    except (OSError, TypeError):
        return None
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _sha_lock:
        if key in _sha_cache:
            return _sha_cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    with _sha_lock:
        _sha_cache[key] = digest.hexdigest()
    return _sha_cache[key]
