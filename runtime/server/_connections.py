"""Connections and workspaces: ``/v1/api/connections/*`` and ``/v1/api/workspaces/*``.

Shapes follow the wallaroo SDK's MLOps API models: connection ids are strings there, so
the local integer ids are answered as strings and accepted either way.
"""

from starlette.routing import Route

from orchzip.runtime.server._http import ApiError, endpoint, field, int_id
from orchzip.runtime.store import AlreadyExists, NotFound


def connection_json(row):
    return {"id": str(row["id"]), "name": row["name"], "type": row["type"], "details": row["details"],
            "created_at": row["created_at"], "workspace_names": row["workspace_names"]}


def _workspace(store, workspace_id):
    return store.get_workspace(id=int_id(workspace_id, "workspace"))


def create(ctx, body):
    name = field(body, "name", "str")
    kind = field(body, "type", "str")
    details = field(body, "details", "object", required=False, default={})
    try:
        row = ctx.store.create_connection(name, kind, details)
    except AlreadyExists:
        raise ApiError(409, f"a connection named {name!r} already exists; delete it first or pick another name") from None
    return {"id": str(row["id"])}


def get(ctx, body):
    return connection_json(ctx.store.get_connection(field(body, "name", "str")))


def get_by_id(ctx, body):
    connection_id = int_id(field(body, "id", "id"), "connection")
    return connection_json(ctx.store.get_connection(id=connection_id))


def list_(ctx, body):
    workspace_id = field(body, "workspace_id", "int", required=False)
    if workspace_id is not None:
        _workspace(ctx.store, workspace_id)
    return {"connections": [connection_json(r) for r in ctx.store.list_connections(workspace_id)]}


def delete(ctx, body):
    ctx.store.delete_connection(field(body, "name", "str"))


def _membership(ctx, body):
    workspace = _workspace(ctx.store, field(body, "workspace_id", "int"))
    connection = ctx.store.get_connection(id=int_id(field(body, "connection_id", "id"), "connection"))
    return connection["id"], workspace["id"]


def add_to_workspace(ctx, body):
    connection_id, workspace_id = _membership(ctx, body)
    ctx.store.add_connection_to_workspace(connection_id, workspace_id)
    return {"id": f"{connection_id}-{workspace_id}"}


def remove_from_workspace(ctx, body):
    connection_id, workspace_id = _membership(ctx, body)
    ctx.store.remove_connection_from_workspace(connection_id, workspace_id)


def workspace_json(store, row):
    # Models live inside local pipelines, not in workspaces: none are listed.
    return {"id": row["id"], "name": row["name"], "created_at": row["created_at"], "created_by": "local",
            "archived": False, "models": [], "pipelines": [p["id"] for p in store.list_pipelines(row["id"])]}


def create_workspace(ctx, body):
    name = field(body, "workspace_name", "str")
    try:
        row = ctx.store.create_workspace(name)
    except AlreadyExists:
        raise ApiError(409, f"a workspace named {name!r} already exists") from None
    return {"workspace_id": row["id"]}


def list_workspaces(ctx, body):
    field(body, "user_id", "str", required=False)
    return {"workspaces": [workspace_json(ctx.store, w) for w in ctx.store.list_workspaces()]}


def routes():
    base = "/v1/api/connections"
    return [
        Route(f"{base}/create", endpoint(create), methods=["POST"]),
        Route(f"{base}/get", endpoint(get), methods=["POST"]),
        Route(f"{base}/get_by_id", endpoint(get_by_id), methods=["POST"]),
        Route(f"{base}/list", endpoint(list_), methods=["POST"]),
        Route(f"{base}/delete", endpoint(delete), methods=["POST"]),
        Route(f"{base}/add_to_workspace", endpoint(add_to_workspace), methods=["POST"]),
        Route(f"{base}/remove_from_workspace", endpoint(remove_from_workspace), methods=["POST"]),
        Route("/v1/api/workspaces/create", endpoint(create_workspace), methods=["POST"]),
        Route("/v1/api/workspaces/list", endpoint(list_workspaces), methods=["POST"]),
    ]


__all__ = ["routes", "connection_json", "NotFound"]
