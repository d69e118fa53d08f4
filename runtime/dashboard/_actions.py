"""The dashboard's actions (POST, CSRF-checked): run a task once, kill, pause, resume, sign in/out."""

import time

from orchzip.runtime.dashboard._session import COOKIE
from orchzip.runtime.dashboard._web import action, redirect, render, safe_next, session_nonce

RUN_ROW_WAIT_SECONDS = 5.0


def _back(request, task, done):
    target = safe_next(request.state.form.get("next"), f"/ui/tasks/{task['id']}")
    return redirect(f"{target}{'&' if '?' in target else '?'}done={done}")


@action
def run_once(request):
    """Run the task's zip once now, with its args, as a new run-once task; show its run."""
    ctx = request.app.state.ctx
    task = ctx.store.get_task(request.path_params["task_id"])
    new = ctx.store.create_task("run_once", task["source"], args=task["args"], name=task["name"],
                                timeout=task["timeout"], workspace_id=task["workspace_id"], orch_id=task["orch_id"],
                                no_env=int(ctx.no_env))
    ctx.start_run_once(new)
    # The run's row is written as the run starts (before any environment is built): wait for
    # it briefly so the user lands on the run's live log.
    deadline = time.monotonic() + RUN_ROW_WAIT_SECONDS
    while time.monotonic() < deadline:
        started = ctx.store.list_runs(task_id=new["id"], limit=1)
        if started:
            return redirect(f"/ui/runs/{started[0]['id']}")
        time.sleep(0.05)
    return redirect(f"/ui/tasks/{new['id']}")


@action
def kill(request):
    from orchzip.runtime.scheduler.control import request_kill
    ctx = request.app.state.ctx
    task = request_kill(ctx.store, ctx.store.get_task(request.path_params["task_id"])["id"])
    ctx.wake_scheduler()
    return _back(request, task, "kill")


@action
def pause(request):
    return _pause_or_resume(request, "pause")


@action
def resume(request):
    return _pause_or_resume(request, "resume")


def _pause_or_resume(request, verb):
    from orchzip.runtime.scheduler import control
    ctx = request.app.state.ctx
    change = control.pause_task if verb == "pause" else control.resume_task
    task = change(ctx.store, request.path_params["task_id"])
    ctx.wake_scheduler()
    return _back(request, task, verb)


@action
def logout(request):
    response = redirect("/ui/login")
    response.delete_cookie(COOKIE, path="/")
    return response


async def login_form(request):
    target = safe_next(request.query_params.get("next"))
    if session_nonce(request) is not None:
        return redirect(target)
    return render(request, "login.html", title="Sign in", next=target, error=None)


async def login(request):
    sessions = request.app.state.sessions
    form = await request.form(max_files=0, max_fields=8)
    target = safe_next(form.get("next"))
    given = form.get("token")
    if not isinstance(given, str) or not given.strip() or not sessions.token_matches(given):
        return render(request, "login.html", status=401, title="Sign in", next=target,
                      error="That is not this server's token. Print it with: orchzip serve --show-token")
    response = redirect(target)
    response.set_cookie(COOKIE, sessions.issue(), httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https")
    return response


__all__ = ["run_once", "kill", "pause", "resume", "login_form", "login", "logout"]
