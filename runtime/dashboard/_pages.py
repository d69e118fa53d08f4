"""The dashboard's pages (GET): tasks, one task, runs, one run and its log, connections, pipelines."""

import json

from starlette.responses import JSONResponse

from orchzip.runtime.dashboard import _charts, _queries as q
from orchzip.runtime.dashboard._web import SECURITY_HEADERS, PageError, page, page_number, render

TASKS_PER_PAGE = 50
RUNS_PER_PAGE = 50
CHART_WINDOWS = (50, 200, 1000)
DEFAULT_WINDOW = 200
KINDS = {"": "All", "scheduled": "Scheduled", "run_once": "Run once"}
RUN_STATUSES = ("running", "success", "failure", "killed", "timed_out")
DONE_MESSAGES = {
    "kill": "Kill requested: the task's run stops and the task fires no more.",
    "pause": "Paused: the task does not fire until it is resumed.",
    "resume": "Resumed: the task fires again from its next time.",
}


def run_href(run):
    return f"/ui/runs/{run['id']}"


def _scheduler(ctx):
    from orchzip.runtime.scheduler.loop import scheduler_alive
    return scheduler_alive(ctx.store)


@page
def tasks(request):
    ctx = request.app.state.ctx
    kind = request.query_params.get("kind", "")
    if kind not in KINDS:
        raise PageError(404, f"no task kind {kind!r}; the kinds are: scheduled, run_once")
    total = q.count_tasks(ctx.store, kind or None)
    number, pages = page_number(request, total, TASKS_PER_PAGE)
    rows = q.task_rows(ctx.store, kind or None, offset=(number - 1) * TASKS_PER_PAGE, limit=TASKS_PER_PAGE)
    for row in rows:
        row["strip"] = _charts.strip(row["recent"], f"strip-{row['id'][:8]}")
    has_scheduled = q.count_tasks(ctx.store, "scheduled") > 0
    return render(request, "tasks.html", title="Tasks", tasks=rows, total=total, page=number, pages=pages,
                  kind=kind, kinds=KINDS, scheduler=_scheduler(ctx), has_scheduled=has_scheduled)


@page
def task(request):
    ctx = request.app.state.ctx
    row = q.get_task(ctx.store, request.path_params["task_id"])
    try:
        window = int(request.query_params.get("last", DEFAULT_WINDOW))
    except ValueError:
        window = DEFAULT_WINDOW
    window = window if window in CHART_WINDOWS else DEFAULT_WINDOW
    status = request.query_params.get("status", "")
    if status and status not in RUN_STATUSES:
        raise PageError(404, f"no run status {status!r}; the statuses are: {', '.join(RUN_STATUSES)}")
    total = q.count_runs(ctx.store, row["id"], status or None)
    number, pages = page_number(request, total, RUNS_PER_PAGE)
    runs = q.run_rows(ctx.store, row["id"], status or None, offset=(number - 1) * RUNS_PER_PAGE, limit=RUNS_PER_PAGE)
    charted = q.recent_runs(ctx.store, row["id"], window)
    charts = {
        "timeline": _charts.timeline(charted, link=run_href),
        "duration": _charts.plot(charted, "duration", "duration", "Duration of each run", "seconds", link=run_href),
        "rows": _charts.plot(charted, "rows_written", "rows", "Rows written by each run", "rows", link=run_href),
    }
    next_fires = []
    if row["kind"] == "scheduled" and not row["paused"] and row["status"] in ("pending", "started"):
        from orchzip.runtime.scheduler.control import next_fire_times
        next_fires = [f.isoformat(timespec="seconds") for f in next_fire_times(row, 3)]
    return render(request, "task.html", title=f"Task {row['name'] or row['id'][:8]}", task=row, runs=runs,
                  total=total, page=number, pages=pages, status_filter=status, statuses=RUN_STATUSES, window=window,
                  windows=CHART_WINDOWS, charts=charts, charted=charted, failures=q.failure_groups(ctx.store, row["id"]),
                  next_fires=next_fires, args_json=json.dumps(row["args"], indent=2, sort_keys=True),
                  done=DONE_MESSAGES.get(request.query_params.get("done", "")), scheduler=_scheduler(ctx))


@page
def runs(request):
    ctx = request.app.state.ctx
    status = request.query_params.get("status", "")
    if status and status not in RUN_STATUSES:
        raise PageError(404, f"no run status {status!r}; the statuses are: {', '.join(RUN_STATUSES)}")
    total = q.count_runs(ctx.store, status=status or None)
    number, pages = page_number(request, total, RUNS_PER_PAGE)
    rows = q.run_rows(ctx.store, status=status or None, offset=(number - 1) * RUNS_PER_PAGE, limit=RUNS_PER_PAGE)
    return render(request, "runs.html", title="Runs", runs=rows, total=total, page=number, pages=pages,
                  status_filter=status, statuses=RUN_STATUSES)


@page
def run(request):
    ctx = request.app.state.ctx
    row = q.get_run(ctx.store, request.path_params["run_id"])
    task_row = ctx.store.get_task(row["task_id"])
    if row["status"] == "running":
        row.update({k: v for k, v in q.live_progress(row).items() if v is not None})
    text, offset, truncated = q.read_log_chunk(row)
    return render(request, "run.html", title=f"Run {row['id'][:8]}", run=row, task=task_row,
                  sha=q.zip_sha256(ctx.store, task_row), args_json=json.dumps(task_row["args"], indent=2, sort_keys=True),
                  log_text=text, log_offset=offset, log_truncated=truncated,
                  done=DONE_MESSAGES.get(request.query_params.get("done", "")))


def _log_json(request):
    ctx = request.app.state.ctx
    row = q.get_run(ctx.store, request.path_params["run_id"])
    try:
        offset = max(0, int(request.query_params.get("offset", "0")))
    except ValueError:
        raise PageError(400, "offset must be a whole number of bytes") from None
    text, next_offset, _ = q.read_log_chunk(row, offset)
    if row["status"] == "running":
        row.update({k: v for k, v in q.live_progress(row).items() if v is not None})
    fields = {k: row.get(k) for k in ("status", "rows_read", "rows_inferred", "rows_written", "exit_code", "error",
                                      "ended_at", "duration")}
    return {"text": text, "offset": next_offset, "run": fields,
            "done": row["status"] != "running" and next_offset == offset}


@page
def log(request):
    """New log text from a byte offset, and the run's status and row counts (the page polls it)."""
    return JSONResponse(_log_json(request), headers=SECURITY_HEADERS)


@page
def connections(request):
    from orchzip.runtime.redact import mask_details
    ctx = request.app.state.ctx
    rows = [dict(c, details_json=json.dumps(mask_details(c["details"]), indent=2, sort_keys=True))
            for c in ctx.store.list_connections()]
    return render(request, "connections.html", title="Connections", connections=rows)


@page
def pipelines(request):
    from orchzip.runtime.registry import list_models, steps_of
    ctx = request.app.state.ctx
    rows = [dict(p, steps=[f"{m['name']}:{m['version']}" for m in steps_of(ctx.store, p)])
            for p in ctx.store.list_pipelines()]
    return render(request, "pipelines.html", title="Pipelines", pipelines=rows, models=list_models(ctx.store),
                  orchestrations=ctx.store.list_orchestrations())


__all__ = ["tasks", "task", "runs", "run", "log", "connections", "pipelines"]
