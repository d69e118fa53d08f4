"""Tasks: ``/v1/api/task/run_once``, ``run_scheduled``, ``list``, ``get_by_id``, ``kill``,
``pause``, ``list_task_runs``, ``get_run_details``, ``get_tasks_by_orch_sha`` and
``get_logs_for_run``.

A run-once task starts on a thread of its own (see ``ServerContext``); a scheduled one is
fired by the scheduler running in the server. Logs are read from the run's log file, so a
running task's logs are served as they grow, in Wallaroo's log line form (``_logs``).

Statuses are Wallaroo's: a task's from the SDK's task status enum (``TASK_STATUSES``), a run's
from its run status enum (``RUN_STATUSES``); the SDK refuses any other value.
"""

from starlette.routing import Route

from orchzip.errors import ConfigError
from orchzip.runtime.server._http import ApiError, endpoint, field, uuid_id
from orchzip.runtime.server._logs import wallaroo_log_lines

RUN_STATUSES = ("running", "success", "failure", "killed", "timed_out", "unknown")
TASK_STATUSES = ("pending", "started", "pending_kill", "killed", "failed", "success", "timed_out", "paused",
                 "pending_pause", "pending_resume", "crash_loop", "resource_contention", "schedule_error")
# Wallaroo's run types of orchzip's task kinds ("continuous": runtime/continuous.py).
RUN_TYPES = {"run_once": "Oneshot", "scheduled": "CronJob", "continuous": "NetworkService"}
DEFAULT_LAST_RUNS = 5


def wallaroo_task_status(task):
    """The task's status as Wallaroo reports it.

    On Wallaroo a run-once task that has run stays ``started``: the outcome is its run's status
    (notebooks poll ``task.status() != "started"``, then read ``task.last_runs()``). A
    scheduled task is ``started`` once its schedule is armed, before its first fire (its cron
    job exists), and ``paused`` while paused.
    """
    status = task["status"]
    if task["kind"] == "run_once" and status in ("success", "failed", "timed_out"):
        return "started"
    if task["kind"] == "scheduled" and status in ("pending", "started"):
        return "paused" if task.get("paused") else "started"
    return status if status in TASK_STATUSES else "failed"


def task_json(store, task, run_limit=DEFAULT_LAST_RUNS):
    runs = store.list_runs(task_id=task["id"], limit=run_limit)
    status = wallaroo_task_status(task)
    body = {
        "id": task["id"], "name": task["name"], "status": status,
        "run_type": RUN_TYPES.get(task["kind"], "NetworkService"),
        "created_at": task["created_at"], "updated_at": task["updated_at"], "input_data": task["args"],
        # Wallaroo says killed once the kill is done; pending_kill is not yet killed.
        "killed": status == "killed", "workspace_id": task["workspace_id"],
        "orch_id": task["orch_id"], "last_runs": [run_json(r) for r in runs],
    }
    if task["kind"] == "scheduled":
        body["schedule"] = task["schedule"]
        body["next_fire_at"] = task["next_fire_at"]
    return body


def run_json(run):
    status = run["status"] if run["status"] in RUN_STATUSES else "unknown"
    return {"run_id": run["id"], "status": status, "created_at": run["created_at"],
            "updated_at": run["updated_at"], "task": run["task_id"],
            # orchzip's own: what names the run's output across retries, and how its status
            # was settled from its sinks' commits (e.g. "already committed by run X").
            "idempotency_key": run.get("idempotency_key"), "note": run.get("note")}


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
    orch_sha = field(body, "orch_sha", "str", required=False)
    if orch_sha is not None:
        tasks = [t for t in tasks if t["orch_id"] in _orchestrations_with_sha(ctx.store, orch_sha)]
    answers = [task_json(ctx.store, t, max(run_limit, 0)) for t in tasks]
    if killed is not None:
        answers = [t for t in answers if t["killed"] == killed]
    return answers


def _orchestrations_with_sha(store, sha):
    return {o["id"] for o in store.list_orchestrations() if o["sha"] == sha}


def get_tasks_by_orch_sha(ctx, body):
    ids = _orchestrations_with_sha(ctx.store, field(body, "sha", "str"))
    return {"ids": [t["id"] for t in ctx.store.list_tasks() if t["orch_id"] in ids]}


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


def pause(ctx, body):
    """Pause (``pause: true``) or resume a scheduled task: the SDK's experimental ``_pause``/``_resume``."""
    from orchzip.runtime.scheduler.control import pause_task, resume_task
    task = ctx.store.get_task(_exact_id(body, "id"))
    wanted = field(body, "pause", "bool")
    if task["kind"] != "scheduled":
        raise ApiError(409, f"task {task['id']} is {RUN_TYPES.get(task['kind'], task['kind'])}; "
                            "only scheduled (CronJob) tasks pause and resume")
    try:
        task = pause_task(ctx.store, task["id"]) if wanted else resume_task(ctx.store, task["id"])
    except ConfigError as err:
        raise ApiError(409, str(err)) from None
    ctx.wake_scheduler()
    return task_json(ctx.store, task)


def list_task_runs(ctx, body):
    field(body, "task_id", "str")
    limit = field(body, "limit", "int", required=False)
    status = field(body, "status", "str", required=False)
    if status == "all":  # the SDK's last_runs(status="all")
        status = None
    if status is not None and status not in RUN_STATUSES:
        raise ApiError(422, f"field 'status' must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
    if limit is not None and limit < 1:
        raise ApiError(422, f"field 'limit' must be 1 or more, not {limit}")
    task = ctx.store.get_task(_exact_id(body, "task_id"))
    return [run_json(r) for r in ctx.store.list_runs(task_id=task["id"], status=status, limit=limit)]


def get_run_details(ctx, body):
    """One run of a task (``pod_id`` is Wallaroo's name of the run id): what a notebook shows of a run."""
    task = ctx.store.get_task(_exact_id(body, "task"))
    run = ctx.store.get_run(uuid_id(field(body, "pod_id", "str"), "run"))
    if run["task_id"] != task["id"]:
        raise ApiError(404, f"run {run['id']} is not a run of task {task['id']}")
    return {key: value for key, value in run_json(run).items() if key != "task"}


def get_logs_for_run(ctx, body):
    run_id = field(body, "id", "str")
    lines = field(body, "lines", "int", required=False)
    if lines is not None and lines < 0:
        raise ApiError(422, f"field 'lines' must be 0 or more, not {lines}")
    run = ctx.store.get_run(uuid_id(run_id, "run"))
    return {"logs": wallaroo_log_lines(run, lines)}


def routes():
    base = "/v1/api/task"
    return [
        Route(f"{base}/run_once", endpoint(run_once, status=201), methods=["POST"]),
        Route(f"{base}/run_scheduled", endpoint(run_scheduled, status=201), methods=["POST"]),
        Route(f"{base}/list", endpoint(list_), methods=["POST"]),
        Route(f"{base}/get_by_id", endpoint(get_by_id), methods=["POST"]),
        Route(f"{base}/kill", endpoint(kill, status=202), methods=["POST"]),
        Route(f"{base}/pause", endpoint(pause, status=202), methods=["POST"]),
        Route(f"{base}/list_task_runs", endpoint(list_task_runs), methods=["POST"]),
        Route(f"{base}/get_run_details", endpoint(get_run_details), methods=["POST"]),
        Route(f"{base}/get_tasks_by_orch_sha", endpoint(get_tasks_by_orch_sha), methods=["POST"]),
        Route(f"{base}/get_logs_for_run", endpoint(get_logs_for_run), methods=["POST"]),
    ]


__all__ = ["routes", "task_json", "run_json", "wallaroo_task_status", "RUN_TYPES", "TASK_STATUSES"]
