"""``/v1/api/task/run_continuously``: a task of run type NetworkService, kept running.

The SDK's ``orchestration.run_continuously(name, json_args, debug)`` posts
``{name, orch_id, workspace_id, json, debug?}`` and reads ``{id}`` (201). The task runs on a
thread of the server (see ``runtime.continuous``): main.py is restarted with backoff when it
exits, ``crash_loop`` when it keeps failing, until ``task/kill``. When the server stops, the
task's run is killed but the task stays as it was; the next server start takes it up again,
as a Kubernetes service outlives a restart of its control plane.
"""

import logging

from starlette.routing import Route

from orchzip.runtime.server._http import endpoint

log = logging.getLogger("orchzip.server")

# What the server stopping leaves of a continuous task's run (its task goes on at the next start).
STOPPED_RUN = "orchzip serve stopped; the task starts again with the server"


def run_continuously(ctx, body):
    from orchzip.runtime.continuous import KIND
    from orchzip.runtime.server._tasks import _common
    orch, args, name, timeout = _common(ctx, body)
    if timeout is not None:
        from orchzip.runtime.server._http import ApiError
        raise ApiError(422, "field 'timeout' does not apply to run_continuously: the task runs until killed")
    task = ctx.store.create_task(KIND, orch["path"], args=args, name=name, workspace_id=orch["workspace_id"],
                                 orch_id=orch["id"], no_env=int(ctx.no_env))
    start(ctx, task)
    return {"id": task["id"]}


def start(ctx, task):
    """Keep ``task`` running on a thread the server joins when it stops."""
    from orchzip.runtime.continuous import start_in_thread
    from orchzip.runtime.scheduler.control import kill_requested

    def should_stop():
        return ctx._stopping.is_set() or kill_requested(ctx.store, task["id"])

    def on_restart(run, delay, status):
        log.info("task %s: run %s %s; starting it again in %g s (%s)", task["id"], run["id"], run["status"],
                 delay, status)

    # stop_status None: a server that stops leaves the task started; a kill ends it killed.
    thread = start_in_thread(ctx.store, task, should_stop=should_stop, stop_status=None, no_env=ctx.no_env,
                             on_restart=on_restart,
                             stop_reason=lambda: STOPPED_RUN if ctx._stopping.is_set() else "killed on request")
    with ctx._running_lock:
        ctx._threads.add(thread)
    return thread


def resume(ctx):
    """At server start: take up the continuous tasks a previous server left going."""
    from orchzip.runtime.continuous import KIND
    from orchzip.runtime.runner import settle_lost_run
    for run in ctx.store.running_runs(kind=KIND):
        if ctx.store.get_task(run["task_id"]).get("orch_id"):
            settle_lost_run(ctx.store, run, STOPPED_RUN)  # what is left of it killed, settled from its commits
    for task in ctx.store.list_tasks(kind=KIND):
        if not task.get("orch_id"):
            continue  # an `orchzip run --continuously` of its own
        if task["status"] == "pending_kill":
            ctx.store.update_task(task["id"], status="killed")
        elif task["status"] in ("pending", "started", "crash_loop"):
            log.info("task %s: run continuously again", task["id"])
            start(ctx, task)


def routes():
    return [Route("/v1/api/task/run_continuously", endpoint(run_continuously, status=201), methods=["POST"])]


__all__ = ["routes", "resume", "start"]
