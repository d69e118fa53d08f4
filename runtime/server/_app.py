"""The Starlette application and the uvicorn server around it."""

import contextlib
import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware

from orchzip.runtime.server import (
    _connections, _continuous, _graphql, _inference, _orchestrations, _platform, _tasks,
)
from orchzip.runtime.server._auth import BearerAuth, load_or_create_token
from orchzip.runtime.server._context import ServerContext
from orchzip.runtime.server._http import EXCEPTION_HANDLERS

log = logging.getLogger("orchzip.server")


def create_app(state_dir, token=None, no_env=False, max_upload_bytes=None, scheduler=True):
    """The ASGI app of the local Wallaroo-compatible API on ``state_dir``.

    :param token: the bearer token every request must carry (default: the state directory's).
    :param no_env: run tasks in orchzip's own Python, not in environments built per zip.
    :param max_upload_bytes: the largest orchestration zip accepted (default: the builder's limit).
    :param scheduler: fire scheduled tasks from this process.
    """
    token = token or load_or_create_token(state_dir)
    ctx = ServerContext(state_dir, no_env=no_env, max_upload_bytes=max_upload_bytes, scheduler=scheduler)
    ctx.models = _inference.ModelCache()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        ctx.start()
        _continuous.resume(ctx)  # run-continuously tasks a previous server left going
        log.info("orchzip serve: state in %s", ctx.state_dir)
        try:
            yield
        finally:
            ctx.stop()
            ctx.models.close()  # worker processes of non-ONNX steps end with the server

    routes = (_platform.routes() + _connections.routes() + _orchestrations.routes() + _tasks.routes()
              + _continuous.routes() + _graphql.routes() + _inference.routes())
    auth = Middleware(BearerAuth, token=token, open_paths=_platform.OPEN_PATHS)
    app = Starlette(routes=routes, middleware=[auth],
                    exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.ctx = ctx
    from orchzip.runtime.dashboard import install
    install(app, ctx, token)  # the dashboard at / and /ui/..., signed in by cookie
    return app


def serve(state_dir, host="127.0.0.1", port=8080, **options):
    """Serve the API until interrupted (SIGINT/SIGTERM stop it cleanly); blocks.

    :param options: passed to :func:`create_app`.
    """
    import uvicorn
    app = create_app(state_dir, **options)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=True,
                            lifespan="on", timeout_graceful_shutdown=10)
    uvicorn.Server(config).run()
