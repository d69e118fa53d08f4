"""``orchzip serve``: Wallaroo's MLOps REST API and pipeline inference URL, served locally.

Backed by the state directory (connections, workspaces, pipelines, tasks, runs), the
run-once runner and the scheduler, plus the GraphQL reads the wallaroo SDK makes. Every request
but ``GET /v1/api/config`` (what a wallaroo ``Client()`` reads before it has a token) needs the
bearer token kept in the state directory (:func:`load_or_create_token`). Local use only;
nothing here ships inside a zip.
"""

from orchzip.runtime.server._app import create_app, serve
from orchzip.runtime.server._auth import load_or_create_token, token_path

__all__ = ["create_app", "serve", "load_or_create_token", "token_path"]
