"""``POST /v1/graphql``: the part of Wallaroo's GraphQL API the wallaroo SDK reads orchestrations,
tasks and workspaces through.

The SDK's GraphQL client fetches the schema by introspection and then validates every query
against it before sending, so the schema below declares every type, field, argument and
variable type that the SDK's orchestration and workspace documents select (named as Wallaroo's
Hasura schema names them: ``orchestration_by_pk``, ``uuid``, ``bigint``, ``order_by``...). The
parsing, validation, introspection and execution are graphql-core's; only the resolvers, which
read the state store, are ours. The one mutation served is the workspace insert the SDK makes
for a user's default workspace (``Client.get_current_workspace()`` before any
``set_current_workspace``); orchestrations, other workspaces and connections it makes over the
REST API, which this server answers.
"""

from graphql import GraphQLError, build_schema, graphql_sync
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchzip.runtime.server._http import ApiError, read_json
from orchzip.runtime.store import NotFound

SDL = """
scalar uuid
scalar bigint
scalar bpchar
scalar timestamptz

"Column ordering options (Hasura's)."
enum order_by {
  asc
  asc_nulls_first
  asc_nulls_last
  desc
  desc_nulls_first
  desc_nulls_last
}

input String_comparison_exp { _eq: String, _neq: String, _in: [String!], _nin: [String!] }
input uuid_comparison_exp { _eq: uuid, _neq: uuid, _in: [uuid!], _nin: [uuid!] }
input bigint_comparison_exp { _eq: bigint, _neq: bigint, _in: [bigint!], _nin: [bigint!] }
input bpchar_comparison_exp { _eq: bpchar, _neq: bpchar, _in: [bpchar!], _nin: [bpchar!] }

input orchestration_bool_exp {
  id: uuid_comparison_exp
  task_id: uuid_comparison_exp
  workspace_id: bigint_comparison_exp
  sha: bpchar_comparison_exp
  name: String_comparison_exp
  status: String_comparison_exp
}

input user_default_workspace_bool_exp { user_id: String_comparison_exp }

input model_order_by { id: order_by, updated_at: order_by, created_at: order_by }

"An uploaded orchestration zip."
type orchestration {
  id: uuid!
  name: String
  file_name: String
  owner_id: String!
  sha: bpchar!
  status: String!
  task_id: uuid
  workspace_id: bigint!
  created_at: timestamptz!
  updated_at: timestamptz!
  image_path: String
  created_on_version: String
  file_size: bigint
  created_by: String
  files: [file!]!
  workspace: workspace!
}

type file { filename: String!, sha: bpchar!, size: bigint }

type workspace {
  archived: Boolean!
  created_at: timestamptz!
  created_by: String
  group_id: bigint
  id: bigint!
  name: String!
  users: [workspace_users!]!
  models(order_by: [model_order_by!]): [model!]!
  pipelines: [pipeline!]!
  orchestrations: [orchestration!]!
}

type workspace_users { user_id: String!, user_type: String }

"A model and its versions."
type model { id: bigint!, model_id: String, models: [model_version!]! }
type model_version { id: bigint!, model_id: String, model_version: String }

type pipeline { id: bigint!, pipeline_id: String }

type user_default_workspace { user_id: String!, workspace: workspace! }

input workspace_users_insert_input { user_id: String, user_type: String }
input workspace_users_arr_rel_insert_input { data: [workspace_users_insert_input!]! }
input user_default_workspace_insert_input { user_id: String }
input user_default_workspace_arr_rel_insert_input { data: [user_default_workspace_insert_input!]! }
input workspace_insert_input {
  name: String
  owner_id: String
  created_by: String
  archived: Boolean
  users: workspace_users_arr_rel_insert_input
  user_default_workspaces: user_default_workspace_arr_rel_insert_input
}
enum workspace_constraint { workspace_name_key workspace_pkey }
enum workspace_update_column { archived created_by name owner_id }
input workspace_on_conflict { constraint: workspace_constraint!, update_columns: [workspace_update_column!]! }

type mutation_root {
  insert_workspace_one(object: workspace_insert_input!, on_conflict: workspace_on_conflict): workspace
}

type query_root {
  orchestration_by_pk(id: uuid!): orchestration
  orchestration(where: orchestration_bool_exp): [orchestration!]!
  workspace_by_pk(id: bigint!): workspace
  workspace: [workspace!]!
  user_default_workspace(where: user_default_workspace_bool_exp): [user_default_workspace!]!
}

schema { query: query_root, mutation: mutation_root }
"""


def orchestration_node(row):
    """An orchestration as the GraphQL schema has it (plain dict; nested fields resolve lazily)."""
    return {
        "id": row["id"], "name": row["name"], "file_name": row["file_name"], "owner_id": row["owner_id"],
        "sha": row["sha"], "status": row["status"], "task_id": None, "workspace_id": row["workspace_id"],
        "created_at": row["created_at"], "updated_at": row["updated_at"], "image_path": "local",
        "created_on_version": None, "file_size": row["file_size"], "created_by": row["owner_id"],
        "files": [{"filename": row["file_name"], "sha": row["sha"], "size": row["file_size"]}],
    }


def workspace_node(row):
    # Local workspaces have no users and are never archived; models live inside local pipelines,
    # not in workspaces (the SDK shows the counts). Pipelines resolve when selected.
    return {"archived": False, "created_at": row["created_at"], "created_by": "local", "group_id": None,
            "id": row["id"], "name": row["name"], "users": [], "models": []}


def _matches(value, condition):
    """One Hasura comparison (``{_eq: x}``, ``{_in: [...]}``...) applied to ``value``."""
    for op, operand in (condition or {}).items():
        if op == "_eq" and value != operand or op == "_neq" and value == operand:
            return False
        if op == "_in" and value not in operand or op == "_nin" and value in operand:
            return False
    return True


def _where(rows, where):
    where = where or {}
    return [r for r in rows if all(_matches(r.get(col), cond) for col, cond in where.items())]


def _store(info):
    return info.context.store


def resolve_orchestration_by_pk(_, info, id):
    try:
        return orchestration_node(_store(info).get_orchestration(id))
    except NotFound:
        return None  # Hasura answers null for a missing primary key


def resolve_orchestrations(_, info, where=None):
    return _where([orchestration_node(r) for r in _store(info).list_orchestrations()], where)


def resolve_workspace_by_pk(_, info, id):
    try:
        return workspace_node(_store(info).get_workspace(id=int(id)))
    except (NotFound, ValueError, TypeError):
        return None


def resolve_workspaces(_, info):
    return [workspace_node(r) for r in _store(info).list_workspaces()]


def resolve_orchestration_workspace(orch, info):
    return workspace_node(_store(info).get_workspace(id=orch["workspace_id"]))


def resolve_workspace_orchestrations(workspace, info):
    return [orchestration_node(r) for r in _store(info).list_orchestrations(workspace["id"])]


def resolve_workspace_pipelines(workspace, info):
    return [{"id": p["id"], "pipeline_id": p["name"]} for p in _store(info).list_pipelines(workspace["id"])]


def resolve_user_default_workspace(_, info, where=None):
    user_id = ((where or {}).get("user_id") or {}).get("_eq")
    if user_id is None:
        raise GraphQLError("user_default_workspace needs where: {user_id: {_eq: ...}}")
    row = _store(info).default_workspace(user_id)
    return [{"user_id": user_id, "workspace": workspace_node(row)}] if row else []


def resolve_insert_workspace_one(_, info, object, on_conflict=None):
    """Create a workspace; with ``on_conflict`` an existing one of that name is answered instead.

    Users named in ``user_default_workspaces`` get it as their default workspace.
    """
    from orchzip.runtime.store import AlreadyExists
    store = _store(info)
    name = object.get("name")
    if not isinstance(name, str) or not name.strip():
        raise GraphQLError("a workspace needs a non-empty name")
    try:
        row = store.create_workspace(name)
    except AlreadyExists:
        if on_conflict is None:
            raise GraphQLError(f"a workspace named {name!r} already exists") from None
        row = store.get_workspace(name)
    for entry in (object.get("user_default_workspaces") or {}).get("data") or []:
        if entry.get("user_id"):
            store.set_default_workspace(entry["user_id"], row["id"])
    return workspace_node(row)


def build():
    """The executable schema: the SDL above with the resolvers bound to it."""
    schema = build_schema(SDL)
    query = schema.query_type.fields
    query["orchestration_by_pk"].resolve = resolve_orchestration_by_pk
    query["orchestration"].resolve = resolve_orchestrations
    query["workspace_by_pk"].resolve = resolve_workspace_by_pk
    query["workspace"].resolve = resolve_workspaces
    query["user_default_workspace"].resolve = resolve_user_default_workspace
    schema.mutation_type.fields["insert_workspace_one"].resolve = resolve_insert_workspace_one
    schema.type_map["orchestration"].fields["workspace"].resolve = resolve_orchestration_workspace
    schema.type_map["workspace"].fields["orchestrations"].resolve = resolve_workspace_orchestrations
    schema.type_map["workspace"].fields["pipelines"].resolve = resolve_workspace_pipelines
    return schema


SCHEMA = build()


def execute(ctx, body):
    """Run one GraphQL request body against the store; the response body (``data``/``errors``)."""
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ApiError(400, "a GraphQL request is a JSON object with a 'query' string (and optional 'variables')")
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise ApiError(400, "'variables' must be a JSON object")
    operation = body.get("operationName")
    result = graphql_sync(SCHEMA, query, context_value=ctx, variable_values=variables,
                          operation_name=operation if isinstance(operation, str) else None)
    answer = {"data": result.data}
    if result.errors:
        answer["errors"] = [_error(e) for e in result.errors]
    return answer


def _error(err: GraphQLError):
    # graphql-core's own message (what failed to validate or resolve); never a traceback.
    formatted = err.formatted
    if err.original_error is not None and not isinstance(err.original_error, GraphQLError):
        formatted["message"] = str(err.original_error).splitlines()[0] if str(err.original_error) else \
            type(err.original_error).__name__
    return formatted


async def graphql_endpoint(request):
    body = await read_json(request)
    answer = await run_in_threadpool(execute, request.app.state.ctx, body)
    return JSONResponse(answer)


def routes():
    return [Route("/v1/graphql", graphql_endpoint, methods=["POST"])]


__all__ = ["routes", "execute", "SCHEMA", "SDL"]
