"""Making a Wallaroo instance (or ``orchzip serve``) match an ``orchzip.yaml``, over its MLOps API.

What an instance holds is read once (workspaces, connections, and every orchestration of the
project's workspaces with its tasks) and compared with the file in one normal form, so that
applying a file twice plans nothing the second time:

- workspaces are created, never deleted (the API cannot delete one);
- connections are created, or deleted and created again when their type or details differ
  (the API has no update), and added to or removed from workspaces; ``${VAR}`` references in
  details are read from the environment of the one who applies (a task on Wallaroo cannot);
  connections the file does not name are left alone: an instance is shared;
- an orchestration is uploaded when no upload of that name in its workspace has the zip's
  SHA-256 (builds are deterministic, so an unchanged folder uploads nothing);
- a task is started when no task of its name runs the orchestration's current zip with its
  settings: a run-once task then runs once, a scheduled or continuous one replaces (kills) its
  predecessor; scheduled and continuous tasks of the file's orchestrations that the file no
  longer names are killed.

Pipelines are not applied: Wallaroo deploys models through its SDK, not this API.
"""

import hashlib
import os
import re
import shutil
import tempfile

from orchzip.errors import ConfigError
from orchzip.mlops import TASK_KINDS
from orchzip.runtime.project._plan import KINDS, Change, Plan, connection_details

__all__ = ["RemotePlan", "make_remote_plan", "apply_remote_plan", "LOCAL_ONLY_TASK_KEYS"]

# Task settings the MLOps API has no field for: they shape local runs only.
LOCAL_ONLY_TASK_KEYS = ("tz", "overlap", "misfire_grace", "retries", "retry_backoff", "no_env", "backoff",
                        "max_backoff", "stable_after", "crash_loop_after", "log_max_bytes", "wallaroo_version")
GONE = ("killed", "pending_kill")  # a task that is, or is becoming, killed: no longer the file's


# What a plan line names as changed, per kind (the rest of a setting is bookkeeping).
COMPARED = {"connection": ("type", "details", "workspaces"), "orchestration": ("sha",),
            "task": ("kind", "args", "schedule", "timeout", "sha")}


class RemoteChange(Change):
    @property
    def changed_keys(self):
        if self.action != "update":
            return []
        keys = [k for k in COMPARED[self.kind] if k in self.current]
        return [k for k in keys if self.current.get(k) != self.desired.get(k)]


class RemotePlan(Plan):
    """The changes that make an instance match a project file; ``notes`` say what is not applied.

    Close it (or use it as a context manager) to drop the zips it built.
    """

    def __init__(self, changes, notes, builds_dir, orchestrations):
        super().__init__(changes, builds_dir)
        self.notes = notes
        # name -> {workspace, sha, zip, id}: each orchestration's upload (id once uploaded)
        self.orchestrations = orchestrations


# -- what the file wants ------------------------------------------------------------------------
def _desired_connections(project, base_dir, environ):
    from orchzip_shim.context import expand_env
    wanted = {}
    for name, c in project.connections.items():
        details = connection_details(base_dir, c.type, c.details)
        try:
            details = expand_env(details, environ)
        except ConfigError as err:
            missing = re.search(r"\$\{(\w+)\}", str(err))
            variable = missing.group(1) if missing else "a variable"
            raise ConfigError(f"connection {name!r}: its details refer to ${{{variable}}}, which is not set here; "
                              f"export {variable} and apply again (an instance stores details as sent, so "
                              "apply --remote reads them from your environment)") from None
        wanted[name] = {"type": c.type, "details": details, "workspaces": sorted(c.workspaces)}
    return wanted


def _desired_orchestrations(project, base_dir, builds_dir):
    from orchzip.builder import build
    wanted = {}
    for name, o in project.orchestrations.items():
        if o.workspace is None:
            raise ConfigError(f"orchestrations.{name}: apply --remote needs its workspace; add "
                              f"workspace: NAME to it (and NAME under workspaces:)")
        path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(o.path)))
        if os.path.isdir(path):
            zip_path = build(path, os.path.join(builds_dir, name)).zip_path
        elif os.path.isfile(path):
            zip_path = path
        else:
            raise ConfigError(f"orchestrations.{name}: {path} is neither a folder nor a zip file")
        with open(zip_path, "rb") as fh:
            sha = hashlib.sha256(fh.read()).hexdigest()
        wanted[name] = {"workspace": o.workspace, "sha": sha, "zip": zip_path}
    return wanted


def task_kind(task):
    if task.continuously:
        return "continuous"
    return "run_once" if task.schedule is None else "scheduled"


def _desired_tasks(project, orchestrations):
    return {name: {"orchestration": t.orchestration, "workspace": orchestrations[t.orchestration]["workspace"],
                   "kind": task_kind(t), "args": _plain(t.args),
                   "schedule": t.schedule, "timeout": t.timeout, "sha": orchestrations[t.orchestration]["sha"]}
            for name, t in project.tasks.items()}


def _plain(value):
    import json
    return json.loads(json.dumps(value, default=str))


# -- what the instance holds --------------------------------------------------------------------
def _current_connections(client):
    return {c["name"]: {"type": c["type"], "details": c.get("details") or {},
                        "workspaces": sorted(c.get("workspace_names") or []), "id": c["id"]}
            for c in client.list_connections()}


def _current_orchestrations(client, workspace_ids):
    """``(orchestrations, tasks)``: the newest upload of each (workspace, name), and every task
    of those names' uploads as ``name -> [task settings]``, newest first."""
    if not workspace_ids:
        return {}, {}
    names = {v: k for k, v in workspace_ids.items()}
    items = client.list_orchestrations_with_tasks(sorted(workspace_ids.values()))
    newest, tasks = {}, {}
    for item in sorted(items, key=lambda i: i["orchestration"].get("created_at") or ""):
        orch = item["orchestration"]
        if orch.get("workspace_id") not in names or not orch.get("name"):
            continue
        key = (names[orch["workspace_id"]], orch["name"])
        if orch.get("status") != "error":
            newest[key] = orch
        for task in item.get("tasks") or []:
            tasks.setdefault(task.get("name"), []).append(_task_settings(task, key, orch))
    for found in tasks.values():
        found.sort(key=lambda t: t["created_at"] or "", reverse=True)
    return newest, tasks


def _task_settings(task, key, orch):
    settings = {"id": task["id"], "orchestration_key": key, "kind": TASK_KINDS.get(task.get("run_type"), "run_once"),
                "args": task.get("input_data") or {}, "schedule": task.get("schedule"), "sha": orch.get("sha"),
                "status": task.get("status"), "created_at": task.get("created_at")}
    if "timeout" in task:  # compared only where the instance reports it
        settings["timeout"] = task["timeout"]
    return settings


# -- planning -----------------------------------------------------------------------------------
def make_remote_plan(client, project, base_dir, environ=None):
    """The :class:`RemotePlan` that makes the instance behind ``client`` match ``project``.

    Orchestration folders are built now (into a temporary folder the plan owns), so that a
    changed ``main.py`` shows as a new upload.

    :param environ: where ``${VAR}`` in connection details are read (default: ``os.environ``).
    """
    builds_dir = tempfile.mkdtemp(prefix="orchzip-remote-plan-")
    try:
        return _make(client, project, base_dir, os.environ if environ is None else environ, builds_dir)
    except BaseException:
        shutil.rmtree(builds_dir, ignore_errors=True)
        raise


def _make(client, project, base_dir, environ, builds_dir):
    wanted_connections = _desired_connections(project, base_dir, environ)
    wanted_orchs = _desired_orchestrations(project, base_dir, builds_dir)
    wanted_tasks = _desired_tasks(project, wanted_orchs)
    workspace_ids = {w["name"]: w["id"] for w in client.list_workspaces()}
    orchs, tasks = _current_orchestrations(
        client, {n: i for n, i in workspace_ids.items() if n in set(project.workspaces)})
    changes = [RemoteChange("create", "workspace", name, desired={}) for name in project.workspaces
               if name not in workspace_ids]
    changes += _connection_changes(_current_connections(client), wanted_connections)
    changes += _orchestration_changes(orchs, wanted_orchs)
    changes += _task_changes(tasks, wanted_tasks, wanted_orchs)
    changes.sort(key=lambda c: KINDS.index(c.kind))
    return RemotePlan(changes, _notes(project), builds_dir, wanted_orchs)


def _connection_changes(current, wanted):
    changes = []
    for name, settings in wanted.items():
        now = current.get(name)
        if now is None:
            changes.append(RemoteChange("create", "connection", name, desired=settings))
        elif {k: now[k] for k in settings} != settings:
            changes.append(RemoteChange("update", "connection", name, current=now, desired=settings))
    return changes


def _orchestration_changes(current, wanted):
    changes = []
    for name, settings in wanted.items():
        now = current.get((settings["workspace"], name))
        if now is None:
            changes.append(RemoteChange("create", "orchestration", name, desired=settings))
        elif now.get("sha") != settings["sha"]:
            changes.append(RemoteChange("update", "orchestration", name, current={"sha": now.get("sha")}, desired=settings))
        else:
            settings["id"] = now["id"]  # the upload that tasks start from
    return changes


def _task_changes(current, wanted, orchestrations):
    changes = []
    for name, settings in wanted.items():
        key = (orchestrations[settings["orchestration"]]["workspace"], settings["orchestration"])
        live = [t for t in current.get(name, []) if t["orchestration_key"] == key and t["status"] not in GONE]
        if not live:
            changes.append(RemoteChange("create", "task", name, desired=settings))
        elif _task_differs(live[0], settings):
            changes.append(RemoteChange("update", "task", name, current=live[0], desired=settings))
    # Tasks still running for the file's orchestrations under names the file no longer has.
    keys = {(o["workspace"], name) for name, o in orchestrations.items()}
    for name, found in current.items():
        if name in wanted:
            continue
        for task in found:
            if task["orchestration_key"] in keys and task["kind"] != "run_once" and task["status"] not in GONE:
                changes.append(RemoteChange("delete", "task", name or task["id"], current=task))
    return changes


def _task_differs(now, wanted):
    return any(now.get(k) != wanted.get(k) for k in COMPARED["task"] if k in now)


def _notes(project):
    notes = []
    if project.pipelines:
        notes.append(f"pipelines are not applied to an instance ({', '.join(sorted(project.pipelines))}): "
                     "deploy their models there with the wallaroo SDK")
    if project.models:
        notes.append(f"models are not uploaded to an instance ({', '.join(sorted(project.models))}): "
                     "upload them there with the wallaroo SDK (wl.upload_model)")
    for name, task in project.tasks.items():
        local = [k for k in LOCAL_ONLY_TASK_KEYS if getattr(task, k, None) not in (None, False)]
        if local:
            notes.append(f"task {name}: {', '.join(local)} shape{'s' if len(local) == 1 else ''} local runs only; "
                         "the MLOps API has no field for them")
    return notes


# -- applying -----------------------------------------------------------------------------------
def apply_remote_plan(client, plan, wait_timeout=900.0, on_progress=None):
    """Carry out ``plan`` through ``client``: workspaces, connections, uploads (waited for until
    ready), then tasks (kills first). Returns ``{task name: task id}`` of the tasks started.

    :param wait_timeout: seconds to wait at most for each upload's packaging.
    :param on_progress: called with one line per step done.
    """
    say = on_progress or (lambda line: None)
    workspace_ids = {w["name"]: w["id"] for w in client.list_workspaces()}
    for change in plan.changes:
        if change.kind == "workspace":
            workspace_ids[change.name] = client.create_workspace(change.name)["workspace_id"]
            say(f"created workspace {change.name}")
    for change in (c for c in plan.changes if c.kind == "connection"):
        _apply_connection(client, change, workspace_ids)
        say(f"{change.action}d connection {change.name}")
    for change in (c for c in plan.changes if c.kind == "orchestration"):
        settings = change.desired
        orch_id = client.upload_orchestration(settings["zip"], workspace_ids[settings["workspace"]],
                                              name=change.name)["id"]
        client.wait_for_orchestration(orch_id, timeout=wait_timeout)
        settings["id"] = orch_id
        say(f"uploaded orchestration {change.name} ({orch_id}), ready")
    started = {}
    for change in sorted((c for c in plan.changes if c.kind == "task"), key=lambda c: c.action != "delete"):
        if change.current is not None and change.current["kind"] != "run_once":
            client.kill_task(change.current["id"])
            say(f"killed task {change.name} ({change.current['id']})")
        if change.desired is not None:
            started[change.name] = _start(client, plan, change, workspace_ids)
            say(f"started task {change.name} ({started[change.name]})")
    return started


def _apply_connection(client, change, workspace_ids):
    settings, now = change.desired, change.current
    if now is None or (now["type"], now["details"]) != (settings["type"], settings["details"]):
        if now is not None:
            client.delete_connection(change.name)
        connection_id = client.create_connection(change.name, settings["type"], settings["details"])["id"]
        had = set()
    else:
        connection_id, had = now["id"], set(now["workspaces"])
    for workspace in sorted(had - set(settings["workspaces"])):
        client.remove_connection_from_workspace(connection_id, workspace_ids[workspace])
    for workspace in sorted(set(settings["workspaces"]) - had):
        client.add_connection_to_workspace(connection_id, workspace_ids[workspace])


def _start(client, plan, change, workspace_ids):
    settings = change.desired
    orch_id = plan.orchestrations[settings["orchestration"]]["id"]
    workspace_id = workspace_ids[settings["workspace"]]
    if settings["kind"] == "scheduled":
        answer = client.run_scheduled(orch_id, workspace_id, settings["schedule"], json=settings["args"],
                                      name=change.name, timeout=settings["timeout"])
    elif settings["kind"] == "continuous":
        answer = client.run_continuously(orch_id, workspace_id, json=settings["args"], name=change.name)
    else:
        answer = client.run_once(orch_id, workspace_id, json=settings["args"], name=change.name,
                                 timeout=settings["timeout"])
    return answer["id"]
