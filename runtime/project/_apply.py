"""Carrying out one :class:`~orchzip.runtime.project._plan.Change` on a store.

One function per action and kind, named ``<action>_<kind>``; each gets the store, the
change and a callback for task-environment progress.
"""

import json
import os
import shutil

from orchzip.runtime.scheduler.clock import to_iso

# A task's settings kept as a recipe's JSON options (the rest have columns).
OPTION_FIELDS = ("continuously", "restart", "log_max_bytes", "wallaroo_version")


def create_workspace(store, change, on_progress):
    store.create_workspace(change.name)


# -- connections ----------------------------------------------------------------------------
def create_connection(store, change, on_progress):
    store.create_connection(change.name, change.desired["type"], change.desired["details"])
    _set_workspaces(store, change.name, change.desired["workspaces"])


def update_connection(store, change, on_progress):
    store.update_connection(change.name, change.desired["type"], change.desired["details"])
    _set_workspaces(store, change.name, change.desired["workspaces"])


def delete_connection(store, change, on_progress):
    store.delete_connection(change.name)


def _set_workspaces(store, name, workspaces):
    connection = store.get_connection(name)
    ids = {w["name"]: w["id"] for w in store.list_workspaces()}
    for workspace in set(connection["workspace_names"]) - set(workspaces):
        store.remove_connection_from_workspace(connection["id"], ids[workspace])
    for workspace in set(workspaces) - set(connection["workspace_names"]):
        store.add_connection_to_workspace(connection["id"], ids[workspace])


# -- models ---------------------------------------------------------------------------------
def create_model(store, change, on_progress):
    """Upload the model as the next version of its name (a changed file is a new version)."""
    from orchzip.runtime.registry import upload_model
    settings = change.desired
    requirements = settings["requirements"].splitlines() if settings["requirements"] is not None else None
    upload_model(store, change.name, settings["file"], framework=settings["framework"],
                 input_schema=settings["input_schema"], output_schema=settings["output_schema"],
                 requirements=requirements, workspace=settings["workspace"], tensor_column=settings["tensor_column"],
                 on_progress=on_progress, convert_to_onnx=settings["convert_to_onnx"])


update_model = create_model


def delete_model(store, change, on_progress):
    from orchzip.runtime.registry import delete_model as delete_versions
    delete_versions(store, change.name)


# -- pipelines and orchestrations -------------------------------------------------------------
def create_pipeline(store, change, on_progress):
    from orchzip.runtime.registry import create_pipeline as create_of_steps
    settings, workspace = change.desired, change.desired["workspace"]
    workspace_id = store.get_workspace(workspace)["id"] if workspace else None
    if settings.get("steps"):
        create_of_steps(store, change.name, settings["steps"], tensor_column=settings["tensor_column"],
                        replace=True, workspace_id=workspace_id)
        return
    store.create_pipeline(change.name, settings["model"], tensor_column=settings["tensor_column"],
                          replace=True, workspace_id=workspace_id)


update_pipeline = create_pipeline


def delete_pipeline(store, change, on_progress):
    store.delete_pipeline(change.name)


def create_orchestration(store, change, on_progress):
    store.put_project_orchestration(change.name, change.desired["path"], change.desired["workspace"])


update_orchestration = create_orchestration


def delete_orchestration(store, change, on_progress):
    store.delete_project_orchestration(change.name)


# -- tasks ----------------------------------------------------------------------------------
def create_task(store, change, on_progress):
    settings = change.desired
    if settings["schedule"] is None:  # a run-once or continuous recipe: `orchzip run NAME` starts it
        store.put_project_task(change.name, settings["orchestration"], args=settings["args"],
                               timeout=settings["timeout"], no_env=settings["no_env"],
                               options={k: settings[k] for k in OPTION_FIELDS})
        return
    from orchzip.runtime.scheduler.control import schedule_task
    task = schedule_task(
        store, _keep_zip(store, settings), settings["schedule"], name=change.name, args=settings["args"],
        timeout=settings["timeout"], tz=settings["tz"], overlap=settings["overlap"],
        misfire_grace=settings["misfire_grace"], retries=settings["retries"],
        retry_backoff=settings["retry_backoff"], no_env=settings["no_env"], on_env_progress=on_progress,
        log_max_bytes=settings["log_max_bytes"], wallaroo_version=settings["wallaroo_version"],
    )
    store.put_project_task(change.name, settings["orchestration"], task_id=task["id"])


def update_task(store, change, on_progress):
    before, settings = change.current, change.desired
    if (before["schedule"] is None) != (settings["schedule"] is None) or before["schedule"] is None:
        # run-once <-> scheduled, or a run-once recipe: replace it
        delete_task(store, change, on_progress)
        create_task(store, change, on_progress)
        return
    from orchzip.runtime.scheduler.control import prepare_environment
    from orchzip.runtime.scheduler.trigger import CronTrigger
    fields = {k: settings[k] for k in ("timeout", "schedule", "tz", "overlap", "misfire_grace", "retries",
                                       "retry_backoff")}
    fields.update(args=json.dumps(settings["args"]), no_env=1 if settings["no_env"] else 0,
                  log_max_bytes=settings["log_max_bytes"])
    if settings["wallaroo_version"] is not None:
        fields["wallaroo_version"] = settings["wallaroo_version"]
    if before.get("sha") != settings["sha"] or before["no_env"] != settings["no_env"]:
        fields["source"] = _keep_zip(store, settings)
        if not settings["no_env"]:
            prepare_environment(fields["source"], on_progress=on_progress,
                                wallaroo_version=settings["wallaroo_version"] or before.get("wallaroo_version"))
    if (before["schedule"], before["tz"]) != (settings["schedule"], settings["tz"]):
        import datetime
        now = datetime.datetime.now(datetime.timezone.utc)
        fields["next_fire_at"] = to_iso(CronTrigger(settings["schedule"], settings["tz"]).next_fire_time(now))
    store.update_task(before["task_id"], **fields)
    store.put_project_task(change.name, settings["orchestration"], task_id=before["task_id"])


def delete_task(store, change, on_progress):
    task_id = change.current.get("task_id")
    if task_id:
        from orchzip.runtime.scheduler.control import FINAL_TASK_STATUSES, request_kill
        if store.get_task(task_id)["status"] not in FINAL_TASK_STATUSES + ("pending_kill",):
            request_kill(store, task_id)
    store.delete_project_task(change.name)


def _keep_zip(store, settings):
    """The task's zip, copied where nothing overwrites it: the state's builds, by content."""
    folder = store.dir_for("builds", "project", settings["sha"][:16])
    target = os.path.join(folder, os.path.basename(settings["source"]))
    if not os.path.exists(target):
        shutil.copyfile(settings["source"], target + ".tmp")
        os.replace(target + ".tmp", target)
    return target
