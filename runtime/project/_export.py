"""Writing a state out as an ``orchzip.yaml``: the inverse of apply.

Paths under the file's folder are written relative to it, so that the file and its folder
move together (into git, to a colleague). Secret-looking literal values in connection
details are written as ``${VAR}`` references unless asked otherwise: the file is meant to be
committed, the secret is not.
"""

import os
import re

import yaml

from orchzip.runtime.project._plan import PATH_TYPES, SCHEDULE_FIELDS, current_state

__all__ = ["export_project", "dump_project"]

SECRET_KEY = re.compile(r"(private_key|secret|token|password|passwd|credential|api_key|apikey)", re.I)
ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
HEADER = """\
# orchzip project file: `orchzip apply` makes the local state match it, `orchzip export` writes it.
# Paths are relative to this file; ${VAR} in connection details is read when a task runs.
"""
TASK_DEFAULTS = {"args": {}, "timeout": None, "no_env": False, "tz": "UTC", "overlap": "forbid",
                 "misfire_grace": 3600.0, "retries": 0, "retry_backoff": 30.0}


def export_project(store, base_dir, include_secrets=False):
    """``(data, notes)``: the state as orchzip.yaml data, and one note per secret left out.

    :param base_dir: the folder the file will be written in (paths are made relative to it).
    :param include_secrets: write secret-looking literal values as they are.
    """
    state, notes = current_state(store), []
    data = {"version": 1}
    if state["workspace"]:
        data["workspaces"] = sorted(state["workspace"])
    connections = {}
    for name, c in state["connection"].items():
        details = _relative_path(base_dir, c["type"], dict(c["details"]))
        if not include_secrets:
            details = _hide_secrets(name, details, notes)
        connections[name] = _drop_empty({"type": c["type"], "details": details, "workspaces": c["workspaces"]})
    orchestrations = {n: _drop_empty({"path": _relative(base_dir, o["path"]), "workspace": o["workspace"]})
                      for n, o in state["orchestration"].items()}
    tasks = {}
    for name, t in state["task"].items():
        if t["orchestration"] is None:  # registered with `orchzip schedule`: its zip is the orchestration
            t = dict(t, orchestration=_zip_orchestration(orchestrations, base_dir, t["source"]))
        tasks[name] = _task_entry(t)
    for key, value in (
        ("connections", connections),
        ("models", {n: _model_entry(base_dir, m) for n, m in state["model"].items()}),
        ("pipelines", {n: _drop_empty({"model": _relative(base_dir, p["model"]), "steps": p["steps"],
                                       "tensor_column": p["tensor_column"], "workspace": p["workspace"]})
                       for n, p in state["pipeline"].items()}),
        ("orchestrations", orchestrations), ("tasks", tasks),
    ):
        if value:
            data[key] = value
    return data, notes


def dump_project(data):
    """The YAML text of ``data``, keys in the order written, with a header comment."""
    return HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _model_entry(base_dir, model):
    """A registered model's newest version as the file declares it (requirements as their lines)."""
    requirements = model["requirements"].splitlines() if model["requirements"] is not None else None
    return _drop_empty({"file": _relative(base_dir, model["file"]),
                        "framework": None if model["framework"] == "onnx" else model["framework"],
                        "input_schema": model["input_schema"], "output_schema": model["output_schema"],
                        "requirements": requirements, "tensor_column": model["tensor_column"],
                        "workspace": model["workspace"], "convert_to_onnx": model["convert_to_onnx"] or None})


def _task_entry(task):
    entry = {"orchestration": task["orchestration"]}
    keys = ["args", "timeout", "no_env"] + (list(SCHEDULE_FIELDS) if task["schedule"] else [])
    for key in keys:
        if key == "schedule" or task[key] != TASK_DEFAULTS.get(key):
            value = task[key]
            entry[key] = _number(value)
    if task.get("continuously"):
        from orchzip.runtime.continuous import RestartPolicy
        default = RestartPolicy()
        entry["continuously"] = True
        defaults = {"backoff": default.backoff, "max_backoff": default.max_backoff,
                    "stable_after": default.stable_seconds, "crash_loop_after": default.crash_loop_after}
        entry.update({k: _number(v) for k, v in (task.get("restart") or {}).items() if v != defaults.get(k)})
    for key in ("log_max_bytes", "wallaroo_version"):
        if task.get(key) is not None:
            entry[key] = task[key]
    return entry


def _number(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value  # 600, not 600.0


def _zip_orchestration(orchestrations, base_dir, source):
    path = _relative(base_dir, source)
    for name, o in orchestrations.items():
        if o["path"] == path:
            return name
    stem = os.path.splitext(os.path.basename(source))[0]
    name, number = stem, 1
    while name in orchestrations:
        number += 1
        name = f"{stem}-{number}"
    orchestrations[name] = {"path": path}
    return name


def _relative(base_dir, path):
    base_dir = os.path.abspath(base_dir)
    if path and os.path.isabs(path) and os.path.commonpath([base_dir, path]) == base_dir:
        return os.path.relpath(path, base_dir)
    return path


def _relative_path(base_dir, type_, details):
    if type_ in PATH_TYPES and isinstance(details.get("path"), str) and "${" not in details["path"]:
        details["path"] = _relative(base_dir, details["path"])
    return details


def _hide_secrets(connection, details, notes, path=()):
    hidden = {}
    for key, value in details.items():
        where = path + (str(key),)
        if isinstance(value, dict):
            hidden[key] = _hide_secrets(connection, value, notes, where)
        elif SECRET_KEY.search(str(key)) and isinstance(value, str) and value and not ENV_REFERENCE.fullmatch(value):
            var = re.sub(r"[^A-Z0-9_]", "_", "_".join((connection,) + where).upper())
            hidden[key] = f"${{{var}}}"
            notes.append(f"connection {connection}: details.{'.'.join(where)} written as ${{{var}}}; "
                         f"set {var} before a task runs (or export with --include-secrets)")
        else:
            hidden[key] = value
    return hidden


def _drop_empty(entry):
    return {k: v for k, v in entry.items() if v not in (None, [], {})}
