"""`orchzip workspaces ...`: local workspaces and what lives in them.

As on Wallaroo, a connection may be in any number of workspaces and a pipeline in one; a
task looks workspaces up by name (``wl.get_workspace(name)``) and finds their pipelines and
connections there. Pipelines outside every workspace are in the default one a task starts in.
"""

from orchzip.commands._output import add_json_flag, print_deleted, print_json, print_table


def _store(args, create=True):
    from orchzip.runtime.store import Store
    return Store(args.state_dir, create=create)  # create=False: a read that never makes a state


def _detail(store, row):
    models = store.select("SELECT DISTINCT name FROM models WHERE workspace_id = ? ORDER BY name", (row["id"],))
    return dict(row, **store.workspace_members(row["id"]), models=[m["name"] for m in models])


def _show(args, store, row):
    detail = _detail(store, row)
    if args.json:
        print_json(detail)
        return
    print(f"{detail['name']} (id {detail['id']}, created {detail['created_at']})")
    print(f"  connections: {', '.join(detail['connections']) or '(none)'}")
    print(f"  pipelines:   {', '.join(detail['pipelines']) or '(none)'}")
    print(f"  models:      {', '.join(detail['models']) or '(none)'}")


def cmd_create(args):
    store = _store(args)
    _show(args, store, store.create_workspace(args.name))


def cmd_get(args):
    store = _store(args, create=False)
    _show(args, store, store.get_workspace(args.name))


def cmd_list(args):
    store = _store(args, create=False)
    rows = [_detail(store, w) for w in store.list_workspaces()]
    if args.json:
        print_json(rows)
        return
    print_table([dict(r, connections=len(r["connections"]), pipelines=len(r["pipelines"])) for r in rows],
                ["name", "id", "connections", "pipelines", "created_at"])


def cmd_delete(args):
    _store(args).delete_workspace(args.name)
    print_deleted(args, "workspace", args.name, note="its connections and pipelines remain")


def cmd_add_connection(args):
    store = _store(args)
    workspace = store.get_workspace(args.workspace)
    store.add_connection_to_workspace(store.get_connection(args.connection)["id"], workspace["id"])
    _show_change(args, store, workspace, f"connection {args.connection} is in workspace {args.workspace}")


def cmd_remove_connection(args):
    store = _store(args)
    workspace = store.get_workspace(args.workspace)
    store.remove_connection_from_workspace(store.get_connection(args.connection)["id"], workspace["id"])
    _show_change(args, store, workspace, f"connection {args.connection} is no longer in workspace {args.workspace}")


def cmd_add_pipeline(args):
    store = _store(args)
    workspace = store.get_workspace(args.workspace)
    previous = store.get_pipeline(args.pipeline)["workspace_name"]
    store.set_pipeline_workspace(args.pipeline, workspace["id"])
    moved = f" (moved from {previous})" if previous and previous != args.workspace else ""
    _show_change(args, store, workspace, f"pipeline {args.pipeline} is in workspace {args.workspace}{moved}")


def cmd_remove_pipeline(args):
    store = _store(args)
    workspace = store.get_workspace(args.workspace)
    if args.pipeline not in store.workspace_members(workspace["id"])["pipelines"]:
        from orchzip.errors import ConfigError
        raise ConfigError(f"pipeline {args.pipeline!r} is not in workspace {args.workspace!r}")
    store.set_pipeline_workspace(args.pipeline, None)
    _show_change(args, store, workspace, f"pipeline {args.pipeline} is back in the default workspace")


def _show_change(args, store, workspace, text):
    if args.json:
        print_json(_detail(store, store.get_workspace(id=workspace["id"])))
    else:
        print(text)


def register(subparsers):
    ws = subparsers.add_parser(
        "workspaces", help="local workspaces holding connections and pipelines, as on Wallaroo",
        description="Local workspaces. Tasks find them with wl.get_workspace(name) and see the "
        "pipelines and connections in them. A connection may be in several workspaces, a pipeline "
        "in one; pipelines in no workspace are in the default workspace a task starts in.",
    )
    sub = ws.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, func, text in (
        ("create", cmd_create, "create a workspace"),
        ("get", cmd_get, "show a workspace with its connections and pipelines"),
        ("delete", cmd_delete, "delete a workspace (its connections and pipelines remain)"),
    ):
        p = sub.add_parser(action, help=text)
        p.add_argument("name")
        add_json_flag(p)
        p.set_defaults(func=func)
    p = sub.add_parser("list", help="list workspaces with how many connections and pipelines each holds")
    add_json_flag(p)
    p.set_defaults(func=cmd_list)
    for action, func, member, text in (
        ("add-connection", cmd_add_connection, "connection", "put a connection in a workspace"),
        ("remove-connection", cmd_remove_connection, "connection", "take a connection out of a workspace"),
        ("add-pipeline", cmd_add_pipeline, "pipeline", "move a pipeline into a workspace (a pipeline is in one)"),
        ("remove-pipeline", cmd_remove_pipeline, "pipeline", "move a pipeline back to the default workspace"),
    ):
        p = sub.add_parser(action, help=text)
        p.add_argument("workspace", metavar="WORKSPACE")
        p.add_argument(member, metavar=member.upper())
        add_json_flag(p)
        p.set_defaults(func=func)
