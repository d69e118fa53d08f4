"""The dashboard as an ASGI app: its routes, and how it joins ``orchzip serve`` or runs alone."""

import contextlib
import logging
import os

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orchzip.runtime.dashboard import _actions, _pages
from orchzip.runtime.dashboard._session import Sessions
from orchzip.runtime.dashboard._web import HERE, render

log = logging.getLogger("orchzip.dashboard")

PREFIX = "/ui"


def is_dashboard_path(path):
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


def routes():
    task = PREFIX + "/tasks/{task_id}"
    return [
        Route("/", _pages.tasks),
        Route(PREFIX, _pages.tasks),
        Route(PREFIX + "/login", _actions.login_form, methods=["GET"]),
        Route(PREFIX + "/login", _actions.login, methods=["POST"]),
        Route(PREFIX + "/logout", _actions.logout, methods=["POST"]),
        Route(task, _pages.task),
        Route(task + "/run", _actions.run_once, methods=["POST"]),
        Route(task + "/kill", _actions.kill, methods=["POST"]),
        Route(task + "/pause", _actions.pause, methods=["POST"]),
        Route(task + "/resume", _actions.resume, methods=["POST"]),
        Route(PREFIX + "/runs", _pages.runs),
        Route(PREFIX + "/runs/{run_id}", _pages.run),
        Route(PREFIX + "/runs/{run_id}/log", _pages.log),
        Route(PREFIX + "/connections", _pages.connections),
        Route(PREFIX + "/pipelines", _pages.pipelines),
        Mount(PREFIX + "/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]


async def _http_error(request, exc):
    messages = {404: "There is no such page.", 405: "That page does not take this method."}
    return render(request, "error.html", status=exc.status_code, title="Not found" if exc.status_code == 404 else "Error",
                  message=messages.get(exc.status_code, str(exc.detail)))


async def _unexpected(request, exc):
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return render(request, "error.html", status=500, title="Internal error",
                  message=f"The dashboard failed ({type(exc).__name__}); the server's log has the details.")


def create_dashboard(ctx, token):
    """The dashboard app over a ``ServerContext`` (its store, and the runs it starts)."""
    app = Starlette(routes=routes(), exception_handlers={HTTPException: _http_error, Exception: _unexpected})
    app.state.ctx = ctx
    app.state.sessions = Sessions(token)
    return app


class _Router:
    """ASGI middleware: dashboard paths go to the dashboard (signed in by cookie), the rest on."""

    def __init__(self, app, dashboard):
        self.app, self.dashboard = app, dashboard

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and is_dashboard_path(scope["path"]):
            return await self.dashboard(scope, receive, send)
        return await self.app(scope, receive, send)


def install(app, ctx, token):
    """Serve the dashboard from ``app`` (the API server) at ``/`` and ``/ui/...``.

    It goes in front of the API's bearer check: its pages sign in with a cookie instead.
    """
    app.add_middleware(_Router, dashboard=create_dashboard(ctx, token))


def create_ui_app(state_dir, token, no_env=False):
    """The dashboard alone (``orchzip ui``): no MLOps API and no scheduler.

    Runs it starts are its own and are killed when it stops. It does not take up runs other
    processes left (that is ``orchzip serve``'s and the scheduler's job), so it can run beside them.
    """
    from orchzip.runtime.server._context import ServerContext
    ctx = ServerContext(state_dir, no_env=no_env, scheduler=False)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            ctx.stop()

    app = create_dashboard(ctx, token)
    app.router.lifespan_context = lifespan
    return app


def serve_ui(state_dir, token, host="127.0.0.1", port=8090, no_env=False):
    """Serve the dashboard alone until interrupted; blocks."""
    import uvicorn
    config = uvicorn.Config(create_ui_app(state_dir, token, no_env=no_env), host=host, port=port,
                            log_level="info", access_log=True, lifespan="on", timeout_graceful_shutdown=10)
    uvicorn.Server(config).run()
