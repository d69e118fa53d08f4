"""Comparing an ``orchzip.yaml`` with a state, and making the state match it.

Both sides are first put in one normal form (kind -> name -> settings, paths absolute,
defaults filled in), so that a plan is a plain difference and applying a file twice plans
nothing the second time. Workspaces are created, never deleted: Wallaroo has no way to
delete one either.
"""

import hashlib
import json
import os
import shutil
import tempfile

from orchzip.runtime.project._apply import OPTION_FIELDS
from orchzip.runtime.scheduler.policies import DEFAULT_MISFIRE_GRACE, DEFAULT_OVERLAP, DEFAULT_RETRY_BACKOFF

__all__ = ["Change", "Plan", "make_plan", "apply_plan", "current_state", "KINDS"]

# In this order things are created; deleted in the reverse (a pipeline goes before its models).
KINDS = ("workspace", "connection", "model", "pipeline", "orchestration", "task")
LIVE = ("pending", "started", "failed", "success", "timed_out")  # a scheduled task that still fires
SCHEDULE_FIELDS = ("schedule", "tz", "overlap", "misfire_grace", "retries", "retry_backoff")
PATH_TYPES = ("DUCKDB", "FILE")
# Settings a task resolves when it is made (a default then read from the environment): one the
# file leaves out is no change.
RESOLVED_WHEN_MADE = ("wallaroo_version",)  # connection types whose details.path is a local file


class Change:
    """One line of a plan: ``create``, ``update`` or ``delete`` one named thing."""

    def __init__(self, action, kind, name, current=None, desired=None):
        self.action, self.kind, self.name = action, kind, name
        self.current, self.desired = current, desired

    @property
    def changed_keys(self):
        if self.action != "update":
            return []
        return sorted(k for k in set(self.current) | set(self.desired)
                      if k not in ("task_id", "source") and self.current.get(k) != self.desired.get(k)
                      and not (k in RESOLVED_WHEN_MADE and self.desired.get(k) is None))

    def as_dict(self):
        return {"action": self.action, "kind": self.kind, "name": self.name, "changed": self.changed_keys}


class Plan:
    """The changes that make a state match a project file. Close it to drop its builds."""

    def __init__(self, changes, builds_dir, adoptions=()):
        self.changes, self._builds_dir = changes, builds_dir
        # (name, orchestration, task_id): scheduled tasks made by `orchzip schedule` that the
        # file declares unchanged; applying records them as the project's, nothing else.
        self.adoptions = list(adoptions)

    def __bool__(self):
        return bool(self.changes)

    def counts(self):
        return {a: sum(1 for c in self.changes if c.action == a) for a in ("create", "update", "delete")}

    def close(self):
        shutil.rmtree(self._builds_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- normal forms ---------------------------------------------------------------------------
def _plain_json(value):
    # YAML has dates and the like; the store keeps JSON: compare what will be stored.
    return json.loads(json.dumps(value, default=str))


def _absolute(base_dir, path):
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))


def connection_details(base_dir, type_, details):
    details = _plain_json(details)
    path = details.get("path")
    if type_ in PATH_TYPES and isinstance(path, str) and "${" not in path:
        details["path"] = _absolute(base_dir, path)
    return details


def _task_settings(task):
    scheduled = task.schedule is not None
    return {
        "orchestration": task.orchestration, "args": _plain_json(task.args), "timeout": task.timeout,
        "no_env": task.no_env, "schedule": task.schedule,
        "tz": (task.tz or "UTC") if scheduled else None,
        "overlap": (task.overlap or DEFAULT_OVERLAP) if scheduled else None,
        "misfire_grace": (DEFAULT_MISFIRE_GRACE if task.misfire_grace is None else task.misfire_grace) if scheduled else None,
        "retries": (task.retries or 0) if scheduled else None,
        "retry_backoff": (task.retry_backoff or DEFAULT_RETRY_BACKOFF) if scheduled else None,
        **_task_options(task),
    }


def _task_options(task):
    """What a task declares beyond args, timeout and schedule: kept with a run-once or
    continuous recipe (its ``options``), or in a scheduled task's own row."""
    from orchzip.runtime.continuous import RestartPolicy
    restart = None
    if task.continuously:
        default = RestartPolicy()
        restart = {"backoff": task.backoff or default.backoff, "max_backoff": task.max_backoff or default.max_backoff,
                   "stable_after": task.stable_after or default.stable_seconds,
                   "crash_loop_after": task.crash_loop_after or default.crash_loop_after}
    return {"continuously": task.continuously, "restart": restart, "log_max_bytes": task.log_max_bytes,
            "wallaroo_version": task.wallaroo_version}


def desired_state(project, base_dir):
    return {
        "workspace": {name: {} for name in project.workspaces},
        "connection": {
            name: {"type": c.type, "details": connection_details(base_dir, c.type, c.details),
                   "workspaces": sorted(c.workspaces)}
            for name, c in project.connections.items()
        },
        "model": {name: _model_settings(base_dir, m) for name, m in project.models.items()},
        "pipeline": {name: {"model": _absolute(base_dir, p.model) if p.model else None, "steps": list(p.steps),
                            "tensor_column": p.tensor_column, "workspace": p.workspace}
                     for name, p in project.pipelines.items()},
        "orchestration": {name: {"path": _absolute(base_dir, o.path), "workspace": o.workspace}
                          for name, o in project.orchestrations.items()},
        "task": {name: _task_settings(t) for name, t in project.tasks.items()},
    }


def current_state(store):
    """The state in the normal form; unowned scheduled tasks are named by their zip."""
    if store is None:
        return {kind: {} for kind in KINDS}
    state = {
        "workspace": {w["name"]: {} for w in store.list_workspaces()},
        "connection": {c["name"]: {"type": c["type"], "details": c["details"], "workspaces": sorted(c["workspace_names"])}
                       for c in store.list_connections()},
        "model": _current_models(store),
        "pipeline": {p["name"]: _current_pipeline(store, p) for p in store.list_pipelines()},
        "orchestration": {o["name"]: {"path": o["path"], "workspace": o["workspace"]}
                          for o in store.list_project_orchestrations()},
        "task": {},
    }
    owned = {}
    for row in store.list_project_tasks():
        if row["task_id"] is None:
            state["task"][row["name"]] = {
                "orchestration": row["orchestration"], "args": row["args"], "timeout": row["timeout"],
                "no_env": bool(row["no_env"]), **{k: None for k in SCHEDULE_FIELDS},
                **{k: row["options"].get(k) for k in OPTION_FIELDS}, "continuously": bool(row["options"].get("continuously"))}
        else:
            owned[row["task_id"]] = row
    for task in store.list_tasks(kind="scheduled"):
        if task["status"] not in LIVE:
            continue
        row = owned.get(task["id"])
        name = row["name"] if row else _free_name(state["task"], task["name"] or task["id"][:8])
        state["task"][name] = dict(_scheduled_settings(task), task_id=task["id"], source=task["source"],
                                   orchestration=row["orchestration"] if row else None)
    return state


def _model_settings(base_dir, model):
    """A model of the file in normal form: its file's sha256 says whether it changed."""
    from orchzip.runtime.registry import file_sha256 as model_sha256
    path = _absolute(base_dir, model.file)
    requirements = model.requirements
    if isinstance(requirements, str):
        requirements = _read_requirements(_absolute(base_dir, requirements))
    elif requirements is not None:
        requirements = "".join(f"{line}\n" for line in requirements)
    return {"file": path, "sha256": model_sha256(path) if os.path.exists(path) else None,
            "framework": model.framework, "input_schema": model.input_schema, "output_schema": model.output_schema,
            "requirements": requirements, "tensor_column": model.tensor_column, "workspace": model.workspace,
            "convert_to_onnx": model.convert_to_onnx}


def _read_requirements(path):
    from orchzip.runtime.project._schema import ProjectFileError
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as err:
        raise ProjectFileError(f"cannot read requirements file {path} ({err.strerror or err})") from None


def _current_models(store):
    """Each registered model's newest version, in the normal form of :func:`_model_settings`."""
    from orchzip.runtime.model_schemas import decode_schema, schema_to_json
    from orchzip.runtime.registry import list_models
    newest = {}
    for row in list_models(store):
        newest[row["name"]] = row  # listed by version: the last one stays
    return {name: dict({"file": m["source_path"], "sha256": m["sha256"], "framework": m["framework"],
                        "input_schema": schema_to_json(decode_schema(m["input_schema"])),
                        "output_schema": schema_to_json(decode_schema(m["output_schema"])),
                        "requirements": m["requirements"], "tensor_column": m["tensor_column"],
                        "workspace": m["workspace_name"], "convert_to_onnx": False}, **_as_uploaded(m))
            for name, m in newest.items()}


def _as_uploaded(row):
    """A model converted to ONNX at upload as the file declares it: the framework and sha256 of
    the file uploaded, not of the .onnx made from it (whose input column the conversion chose)."""
    if not row.get("converted_from"):
        return {}
    return {"framework": row["converted_from"], "sha256": row["source_sha256"], "tensor_column": None,
            "convert_to_onnx": True}


def _current_pipeline(store, pipeline):
    """A pipeline in normal form; a step on its model's newest version is written without the version."""
    from orchzip.runtime.registry import list_models, steps_of
    steps = steps_of(store, pipeline)
    newest = {}
    for row in list_models(store):
        newest[row["name"]] = row["version"]
    return {"model": None if steps else pipeline["model_path"],
            "steps": [m["name"] if newest.get(m["name"]) == m["version"] else f"{m['name']}:{m['version']}"
                      for m in steps],
            "tensor_column": pipeline["tensor_column"], "workspace": pipeline["workspace_name"]}


def _scheduled_settings(task):
    return {"args": task["args"], "timeout": task["timeout"], "no_env": bool(task["no_env"]),
            **{k: task[k] for k in SCHEDULE_FIELDS}, "continuously": False, "restart": None,
            "log_max_bytes": task.get("log_max_bytes"), "wallaroo_version": task.get("wallaroo_version")}


def _free_name(taken, name):
    return name if name not in taken else f"{name}-{len(taken)}"


# -- planning -------------------------------------------------------------------------------
def make_plan(store, project, base_dir):
    """The :class:`Plan` that makes ``store``'s state match ``project`` (``store`` None: no state yet).

    Orchestrations of scheduled tasks are built now (into a temporary folder the plan owns)
    so that a changed ``main.py`` shows as a change of the task.
    """
    builds_dir = tempfile.mkdtemp(prefix="orchzip-plan-")
    try:
        desired, current = desired_state(project, base_dir), current_state(store)
        _add_sources(desired, builds_dir)
        for name, settings in desired["model"].items():
            if name in current["model"] and settings["sha256"] == current["model"][name]["sha256"]:
                settings["file"] = current["model"][name]["file"]  # the same model, moved: no new version
        uploads = {n for n, m in desired["model"].items() if current["model"].get(n) != m}
        _pin_steps(desired["pipeline"], current["pipeline"], _newest_versions(store), uploads)
        changes = []
        for kind in KINDS:
            changes += _diff(kind, current[kind], desired[kind])
    except BaseException:
        shutil.rmtree(builds_dir, ignore_errors=True)
        raise
    changed = {c.name for c in changes if c.kind == "task"}
    adoptions = [(name, desired["task"][name]["orchestration"], settings["task_id"])
                 for name, settings in current["task"].items()
                 if name in desired["task"] and name not in changed and settings.get("task_id")
                 and settings.get("orchestration") is None]
    return Plan(changes, builds_dir, adoptions)


def _add_sources(desired, builds_dir):
    """Each scheduled task's zip: ``source`` (a file) and its ``sha``."""
    from orchzip.builder import build
    built = {}
    for settings in desired["task"].values():
        if settings["schedule"] is None:
            continue
        orchestration = settings["orchestration"]
        if orchestration not in built:
            path = desired["orchestration"][orchestration]["path"]
            if os.path.isdir(path):
                zip_path = build(path, os.path.join(builds_dir, orchestration)).zip_path
            elif os.path.isfile(path):
                zip_path = path
            else:
                from orchzip.runtime.project._schema import ProjectFileError
                raise ProjectFileError(f"orchestration {orchestration!r}: {path} is neither a folder nor a zip file")
            built[orchestration] = zip_path
        settings["source"] = built[orchestration]
        settings["sha"] = file_sha256(built[orchestration])


def file_sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _diff(kind, current, desired):
    changes = []
    for name, settings in desired.items():
        if name not in current:
            changes.append(Change("create", kind, name, desired=settings))
        elif kind == "task":
            now = dict(current[name], sha=file_sha256(current[name]["source"]) if current[name].get("source") else None)
            if _task_differs(now, settings):
                changes.append(Change("update", kind, name, current=now, desired=settings))
        elif current[name] != settings:
            changes.append(Change("update", kind, name, current=current[name], desired=settings))
    if kind != "workspace":
        changes += [Change("delete", kind, name, current=settings) for name, settings in current.items()
                    if name not in desired]
    return changes


def _newest_versions(store):
    from orchzip.runtime.registry import list_models
    return {} if store is None else {m["name"]: m["version"] for m in list_models(store)}  # by version: last wins


def _pin_steps(desired, current, newest, uploads):
    """Steps of both sides in one form, knowing which models the plan uploads a new version of.

    The state writes a step on its model's newest version as ``MODEL`` (see
    ``_current_pipeline``). A model the plan uploads gets a newer version, so the state's steps
    on it are written ``MODEL:N`` (and a file's ``MODEL`` then moves them to the new version);
    a file's ``MODEL:N`` on the newest version of a model the plan leaves alone is ``MODEL``.
    """
    for settings in current.values():
        settings["steps"] = [f"{s}:{newest[s]}" if s in uploads and s in newest else s for s in settings["steps"]]
    for settings in desired.values():
        steps = []
        for step in settings["steps"]:
            name, _, version = step.partition(":")
            same = version and name not in uploads and str(newest.get(name)) == version
            steps.append(name if same else step)
        settings["steps"] = steps


def _task_differs(current, desired):
    keys = ("args", "timeout", "no_env", *SCHEDULE_FIELDS, "sha", "continuously", "restart", "log_max_bytes")
    if any(current.get(k) != desired.get(k) for k in keys):
        return True
    if any(desired.get(k) is not None and current.get(k) != desired[k] for k in RESOLVED_WHEN_MADE):
        return True
    # An unowned scheduled task adopted by name is no change; a renamed orchestration is.
    return current.get("orchestration") not in (None, desired["orchestration"])


# -- applying -------------------------------------------------------------------------------
def apply_plan(store, plan, on_env_progress=None):
    """Carry out ``plan`` on ``store``, deletions of tasks first and of their targets last."""
    from orchzip.runtime.project import _apply
    order = sorted(plan.changes, key=lambda c: (
        0 if c.action == "delete" and c.kind == "task" else 2 if c.action == "delete" else 1,
        KINDS.index(c.kind) * (-1 if c.action == "delete" else 1)))
    for change in order:
        getattr(_apply, f"{change.action}_{change.kind}")(store, change, on_env_progress)
    for name, orchestration, task_id in plan.adoptions:
        store.put_project_task(name, orchestration, task_id=task_id)
