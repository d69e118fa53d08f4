"""Settling a run's status from what its sinks did, not from how its process ended.

The task's sinks append durable records to ``<run dir>/commits.jsonl`` (see
``orchzip_shim.commits``): ``opened``, ``prepared``, then ``committed`` or ``failed`` (or
``aborted``). When a run ends, however it ends (exit, timeout, kill, its runner or scheduler
killed outright), :func:`settle` reads them:

- every opened sink committed -> the run is ``success``, even if a kill or timeout came
  after the commit (the output stands, so the record says so);
- no sink committed -> the outcome the process gave (failure, killed, timed_out): the
  output is untouched;
- a sink prepared but with neither record (SIGKILL inside its commit) -> the sink's ledger
  is asked whether the run's idempotency key is in it (``committed_by`` of its connector);
- some sinks committed and others not -> not success, and the error names both;
- a sink whose ledger cannot be read -> "lost": the only case where orchzip does not know.

It also removes what a dead task leaves behind: temporary files of FILE sinks and the
task context.
"""

import dataclasses
import importlib
import json
import os

__all__ = ["Settlement", "settle", "read_commits", "COMMITS_FILE"]

COMMITS_FILE = "commits.jsonl"
_CONNECTOR_MODULES = {
    "FILE": "orchzip_shim.connectors.file_connector",
    "DUCKDB": "orchzip_shim.connectors.duckdb_connector",
    "BIGQUERY": "orchzip_shim.connectors.bigquery_write",
}


@dataclasses.dataclass
class Settlement:
    """What the sinks of one run did. ``outcome``: none, committed, partial or unknown."""

    outcome: str
    committed: list
    uncommitted: list
    unknown: list
    already: list  # (target text, run id) of no-op commits of a key committed earlier

    def note(self):
        """One line for the run's record: no-op commits, partial or unknown commits."""
        parts = [f"{where}: already committed by run {run}" for where, run in self.already]
        if self.outcome == "partial":
            parts.append(f"committed: {', '.join(self.committed)}; not committed: {', '.join(self.uncommitted)}")
        if self.unknown:
            parts.append(f"unknown whether committed: {', '.join(self.unknown)}")
        return "; ".join(parts) or None


def read_commits(path):
    """``{sink id: {"target", "key", "phases": [...], "already"}}`` from a commits file."""
    sinks = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return sinks
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill: its fsync never returned, so it never counted
        sink = sinks.setdefault(record.get("sink"), {"target": None, "key": None, "phases": [], "already": None})
        sink["phases"].append(record.get("phase"))
        if record.get("phase") == "opened":
            sink["target"], sink["key"] = record.get("target"), record.get("key")
        if record.get("phase") == "committed":
            sink["already"] = record.get("already")
    return sinks


def describe(target):
    if not target:
        return "a sink"
    where = target.get("path") or target.get("table_id") or "?"
    if target.get("table") and target.get("type") == "DUCKDB":
        where = f"{where} table {target['table']}"
    return f"{target.get('type', '?')} {where}"


def settle(run_dir, details_of=None):
    """The :class:`Settlement` of the run whose directory is ``run_dir`` (its task has ended).

    :param details_of: connection name -> its details (``${VAR}`` expanded), for ledgers that
        need credentials to be read (BigQuery's job history).
    """
    committed, uncommitted, unknown, already = [], [], [], []
    for sink in read_commits(os.path.join(run_dir, COMMITS_FILE)).values():
        where = describe(sink["target"])
        phases = sink["phases"]
        if "committed" in phases:
            committed.append(where)
            if sink["already"]:
                already.append((where, sink["already"]))
        elif "prepared" in phases and "failed" not in phases:
            state = _ask_ledger(sink, details_of)
            {"committed": committed, "none": uncommitted}.get(state, unknown).append(where)
        else:
            uncommitted.append(where)
        _remove_leftovers(sink["target"])
    if unknown:
        outcome = "unknown"
    elif committed and uncommitted:
        outcome = "partial"
    elif committed:
        outcome = "committed"
    else:
        outcome = "none"
    return Settlement(outcome, committed, uncommitted, unknown, already)


def _ask_ledger(sink, details_of=None):
    """``committed``, ``none`` or ``unknown``: the sink's ledger on the run's key."""
    target, key = sink["target"] or {}, sink["key"]
    module_name = _CONNECTOR_MODULES.get(target.get("type"))
    if not key or module_name is None:
        return "unknown"
    try:
        module = importlib.import_module(module_name)
        if target.get("type") == "BIGQUERY":
            details = details_of(target.get("connection")) if details_of else None
            return "committed" if module.committed_by(target, key, details) else "none"
        return "committed" if module.committed_by(target, key) else "none"
    except Exception:  # a locked database, a missing library, a network error: we do not know
        return "unknown"


def _remove_leftovers(target):
    if target and target.get("type") == "FILE" and target.get("path"):
        from orchzip_shim.connectors.file_connector import remove_leftovers
        remove_leftovers(target["path"])


def remove_secrets(run_dir):
    """Delete the task context (connection details) and the args file of an ended run."""
    for name in ("context.json", os.path.join("work", "arguments.json")):
        try:
            os.unlink(os.path.join(run_dir, name))
        except FileNotFoundError:
            pass
