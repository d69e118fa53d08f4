"""Tasks: ``/v1/api/task/run_once``, ``run_scheduled``, ``list``, ``get_by_id``, ``kill``,
``list_task_runs`` and ``get_logs_for_run``.

A run-once task starts on a thread of its own (see ``ServerContext``); a scheduled one is
fired by the scheduler running in the server. Logs are read from the run's log file, so a
running task's logs are served as they grow.
"""

import os
from collections import deque

from starlette.routing import Route

from orchzip.errors import ConfigError
from orchzip.runtime.server._http import ApiError, endpoint, field, uuid_id

RUN_STATUSES = ("running", "success", "failure", "killed", "timed_out")
DEFAULT_LAST_RUNS = 5


def task_json(store, task, run_limit=DEFAULT_LAST_RUNS):
    runs = store.list_runs(task_id=task["id"], limit=run_limit)
    body = {
        "id": task["id"], "name": task["name"], "status": task["status"],
        "created_at": task["created_at"], "updated_at": task["updated_at"], "input_data": task["args"],
        "killed": task["status"] in ("pending_kill", "killed"), "workspace_id": task["workspace_id"],
        "orch_id": task["orch_id"], "last_runs": [run_json(r) for r in runs],
    }
    if task["kind"] == "scheduled":
        body["schedule"] = task["schedule"]
        body["next_fire_at"] = task["next_fire_at"]
    return body


def run_json(run):
    return {"run_id": run["id"], "status": run["status"], "created_at": run["created_at"],
            "updated_at": run["updated_at"], "task": run["task_id"]}


def _orchestration_to_run(ctx, orch_id, workspace_id):
    ctx.store.get_workspace(id=workspace_id)
    orch = ctx.store.get_orchestration(orch_id)
    if orch["workspace_id"] != workspace_id:
        raise ApiError(404, f"no orchestration with id {orch_id!r} in workspace {workspace_id}")
    if orch["status"] == "error":
        raise ApiError(409, f"orchestration {orch_id} failed packaging, it cannot run: {orch['error']}")
    if orch["status"] != "ready":
        raise ApiError(409, f"orchestration {orch_id} is {orch['status']}; wait until it is ready")
    return orch


def _common(ctx, body, *more):
    """The fields of run_once / run_scheduled, all checked before anything is looked up."""
    orch_id = field(body, "orch_id", "str")
    workspace_id = field(body, "workspace_id", "int")
    args = field(body, "json", "object", required=False, default={})
    name = field(body, "name", "str", required=False)
    timeout = field(body, "timeout", "number", required=False)
    if timeout is not None and timeout <= 0:
        raise ApiError(422, f"field 'timeout' must be a positive number of seconds, not {timeout}")
    field(body, "debug", "bool", required=False)
    extra = [field(body, name_, "str") for name_ in more]
    orch = _orchestration_to_run(ctx, orch_id, workspace_id)
    return (orch, args, name or orch["name"], timeout, *extra)


def run_once(ctx, body):
    orch, args, name, timeout = _common(ctx, body)
    task = ctx.store.create_task("run_once", orch["path"], args=args, name=name, timeout=timeout,
                                 workspace_id=orch["workspace_id"], orch_id=orch["id"], no_env=int(ctx.no_env))
    ctx.start_run_once(task)
    return {"id": task["id"]}


def run_scheduled(ctx, body):
    from orchzip.runtime.scheduler.control import schedule_task
    orch, args, name, timeout, schedule = _common(ctx, body, "schedule")
    try:
        # The environment was built when the orchestration was packaged: this finds it cached.
        task = schedule_task(ctx.store, orch["path"], schedule, name=name, args=args, timeout=timeout,
                             no_env=ctx.no_env)
    except ConfigError as err:
        raise ApiError(422, f"field 'schedule': {err}") from None
    ctx.store.update_task(task["id"], workspace_id=orch["workspace_id"], orch_id=orch["id"])
    ctx.wake_scheduler()
    return {"id": task["id"]}


def list_(ctx, body):
    workspace_id = field(body, "workspace_id", "int", required=False)
    killed = field(body, "killed", "bool", required=False)
    orch_id = field(body, "orch_id", "str", required=False)
    run_limit = field(body, "run_limit", "int", required=False, default=DEFAULT_LAST_RUNS)
    tasks = ctx.store.list_tasks()
    if workspace_id is not None:
        tasks = [t for t in tasks if t["workspace_id"] == workspace_id]
    if orch_id is not None:
        tasks = [t for t in tasks if t["orch_id"] == orch_id]
    if killed is not None:
        tasks = [t for t in tasks if (t["status"] in ("pending_kill", "killed")) == killed]
    return [task_json(ctx.store, t, max(run_limit, 0)) for t in tasks]


def get_by_id(ctx, body):
    return task_json(ctx.store, ctx.store.get_task(_exact_id(body, "id")))


def _exact_id(body, name):
    return uuid_id(field(body, name, "str"), "task")


def kill(ctx, body):
    from orchzip.runtime.scheduler.control import request_kill
    task = ctx.store.get_task(_exact_id(body, "id"))
    try:
        task = request_kill(ctx.store, task["id"])
    except ConfigError as err:
        raise ApiError(409, str(err)) from None
    ctx.wake_scheduler()
    return task_json(ctx.store, task)


def list_task_runs(ctx, body):
    field(body, "task_id", "str")
    limit = field(body, "limit", "int", required=False)
    status = field(body, "status", "str", required=False)
    if status is not None and status not in RUN_STATUSES:
        raise ApiError(422, f"field 'status' must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
    if limit is not None and limit < 1:
        raise ApiError(422, f"field 'limit' must be 1 or more, not {limit}")
    task = ctx.store.get_task(_exact_id(body, "task_id"))
    return [run_json(r) for r in ctx.store.list_runs(task_id=task["id"], status=status, limit=limit)]


def get_logs_for_run(ctx, body):
    run_id = field(body, "id", "str")
    lines = field(body, "lines", "int", required=False)
    if lines is not None and lines < 0:
        raise ApiError(422, f"field 'lines' must be 0 or more, not {lines}")
    run = ctx.store.get_run(uuid_id(run_id, "run"))
    return {"logs": read_log(run, lines)}


def read_log(run, lines=None):
    """The run's log lines (the last ``lines`` when given), also while it is still written."""
    path = run.get("log_path")
    if not path or not os.path.exists(path):
        return [f"orchzip: error: {run['error']}"] if run.get("error") else []
    with open(path, encoding="utf-8", errors="replace") as fh:
        if lines:
            return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]
        return fh.read().splitlines()


def routes():
    base = "/v1/api/task"
    return [
        Route(f"{base}/run_once", endpoint(run_once, status=201), methods=["POST"]),
        Route(f"{base}/run_scheduled", endpoint(run_scheduled, status=201), methods=["POST"]),
        Route(f"{base}/list", endpoint(list_), methods=["POST"]),
        Route(f"{base}/get_by_id", endpoint(get_by_id), methods=["POST"]),
        Route(f"{base}/kill", endpoint(kill, status=202), methods=["POST"]),
        Route(f"{base}/list_task_runs", endpoint(list_task_runs), methods=["POST"]),
        Route(f"{base}/get_logs_for_run", endpoint(get_logs_for_run), methods=["POST"]),
    ]


__all__ = ["routes", "task_json", "run_json", "read_log"]
