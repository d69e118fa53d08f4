"""`orchzip upload` and `orchzip remote ...`: a Wallaroo instance (or `orchzip serve`) over its MLOps API."""

import argparse
import os
import sys
import tempfile

from orchzip.commands._output import add_json_flag, add_wallaroo_version_flag, print_json, print_table
from orchzip.commands.run import parse_task_args
from orchzip.commands.state import mask_details, read_details
from orchzip.commands._instance import client_from_args
from orchzip.errors import ConfigError

EXIT_FAILED = 1


def _note(text):
    from orchzip.commands._output import note
    note(text)


def _show(args, value, lines):
    if args.json:
        print_json(value)
    else:
        for line in lines:
            print(line)


# -- upload -----------------------------------------------------------------------------------
def _zip_to_upload(target, workdir):
    """A zip as it is; a folder built into a zip first (with the builder's checks)."""
    if os.path.isdir(target):
        from orchzip.builder import build
        result = build(target, workdir)
        for warning in result.warnings:
            _note(f"orchzip: warning: {warning}")
        return result.zip_path
    return target


def _check_requirements(zip_path, wallaroo_version):
    """Refuse a zip whose requirements.txt cannot be installed beside the target SDK."""
    from orchzip.builder import check_environment, zip_requirements
    requirements = zip_requirements(zip_path)
    if not requirements:
        return  # nothing to conflict with the task image
    check = check_environment(requirements, wallaroo_version)
    if check.conflicts:
        lines = "\n".join(f"  requirements.txt: {c}" for c in check.conflicts)
        raise ConfigError(f"not uploading {os.path.basename(zip_path)}: its requirements.txt cannot be installed "
                          f"beside wallaroo {check.wallaroo_version} ({len(check.conflicts)}):\n{lines}\n"
                          f"fix requirements.txt, pick the instance's release with --wallaroo-version, "
                          f"or upload anyway with --no-check")


def cmd_upload(args):
    from orchzip.builder import inspect_zip
    client = client_from_args(args)
    with tempfile.TemporaryDirectory(prefix="orchzip-upload-") as workdir:
        zip_path = _zip_to_upload(args.target, workdir)
        info = inspect_zip(zip_path)  # refuse what the instance would refuse, before sending it
        if not info["entry_point"]:
            _note(f"orchzip: warning: {zip_path} holds no main.py; packaging will fail")
        if not args.no_check:
            _check_requirements(zip_path, args.wallaroo_version)
        orch_id = client.upload_orchestration(zip_path, args.workspace_id, name=args.name)["id"]
    if not args.json:
        _note(f"uploaded {os.path.basename(zip_path)} ({info['size']:,} bytes, sha256 {info['sha256'][:16]}...) "
              f"as orchestration {orch_id}")
    orch = {"id": orch_id, "status": "pending_packaging"}
    if args.wait:
        started = _now()
        orch = client.wait_for_orchestration(
            orch_id, timeout=args.wait_timeout,
            on_status=None if args.json else lambda o: _note(f"  {o['status']} ({_now() - started:.1f} s)"))
    _show(args, orch, [orch_id])
    return 0


def _now():
    import time
    return time.monotonic()


# -- orchestrations -----------------------------------------------------------------------------
def cmd_orchestrations(args):
    rows = client_from_args(args).list_orchestrations(args.workspace_id)
    if args.json:
        return print_json(rows)
    print_table(rows, ["id", "name", "workspace_id", "status", "file_name", "created_at"])


def cmd_orchestration(args):
    from orchzip.commands.remote_tasks import resolve_orchestration
    client = client_from_args(args)
    orch = client.get_orchestration(resolve_orchestration(client, args.orch_id))
    _show(args, orch, [f"{k:12} {'' if v is None else v}" for k, v in orch.items()])


# -- tasks ----------------------------------------------------------------------------------------
def _workspace_of(client, args):
    """The workspace to start a task in; ``args.orch_id`` made a full id on the way."""
    from orchzip.commands.remote_tasks import resolve_orchestration
    args.orch_id = resolve_orchestration(client, args.orch_id)
    if args.workspace_id is not None:
        return args.workspace_id
    return client.get_orchestration(args.orch_id)["workspace_id"]


def cmd_run_once(args):
    client = client_from_args(args)
    task_args = parse_task_args(args.args, args.arg)
    workspace_id = _workspace_of(client, args)
    task_id = client.run_once(args.orch_id, workspace_id, json=task_args, name=args.name,
                              timeout=args.timeout)["id"]
    return _after_start(args, client, task_id)


def cmd_schedule(args):
    if not args.cron:
        raise ConfigError('orchzip remote schedule needs --cron, e.g. --cron "0 3 * * *"')
    client = client_from_args(args)
    task_args = parse_task_args(args.args, args.arg)
    workspace_id = _workspace_of(client, args)
    task_id = client.run_scheduled(args.orch_id, workspace_id, args.cron, json=task_args,
                                   name=args.name, timeout=args.timeout)["id"]
    _show(args, {"id": task_id}, [task_id])
    return 0


def cmd_run_continuously(args):
    client = client_from_args(args)
    task_args = parse_task_args(args.args, args.arg)
    workspace_id = _workspace_of(client, args)
    task_id = client.run_continuously(args.orch_id, workspace_id, json=task_args, name=args.name)["id"]
    _show(args, {"id": task_id}, [task_id])
    return 0


def _after_start(args, client, task_id):
    if not args.wait:
        _show(args, {"id": task_id}, [task_id])
        return 0
    if not args.json:
        _note(f"task {task_id} started; waiting for it to end")
    from orchzip.mlops import task_outcome
    task = client.wait_for_task(task_id, timeout=args.wait_timeout,
                                on_status=None if args.json else lambda t: _note(f"  {task_outcome(t) or t['status']}"))
    runs = task.get("last_runs") or []
    lines = [f"task {task_id} {task['status']}, ended: {task_outcome(task)}"]
    if runs:
        lines.append(f"run {runs[0]['run_id']} {runs[0]['status']} (logs: orchzip remote tasks logs {task_id})")
    _show(args, task, lines)
    return 0 if task_outcome(task) == "success" else EXIT_FAILED


# -- workspaces and connections ---------------------------------------------------------------
def cmd_workspaces_list(args):
    rows = client_from_args(args).list_workspaces()
    if args.json:
        return print_json(rows)
    print_table(rows, ["id", "name", "created_at"])


def cmd_workspaces_create(args):
    answer = client_from_args(args).create_workspace(args.name)
    _show(args, answer, [str(answer["workspace_id"])])


def cmd_connections_create(args):
    details = read_details(args)
    answer = client_from_args(args).create_connection(args.name, args.type, details)
    _show(args, answer, [str(answer["id"])])


def _connection_json(row):
    return dict(row, details=mask_details(row.get("details") or {}))


def cmd_connections_get(args):
    row = _connection_json(client_from_args(args).get_connection(args.name))
    import json
    _show(args, row, [f"{row['name']} ({row['type']}, id {row['id']}, workspaces: "
                      f"{', '.join(row.get('workspace_names') or []) or 'none'})",
                      json.dumps(row["details"], indent=2, sort_keys=True)])


def cmd_connections_list(args):
    rows = [_connection_json(r) for r in client_from_args(args).list_connections(args.workspace_id)]
    if args.json:
        return print_json(rows)
    print_table([dict(r, workspace_names=",".join(r.get("workspace_names") or [])) for r in rows],
                ["id", "name", "type", "workspace_names", "created_at"])


def cmd_connections_delete(args):
    client_from_args(args).delete_connection(args.name)
    _show(args, {"deleted": args.name}, [f"deleted connection {args.name}"])


def cmd_connections_add(args):
    client = client_from_args(args)
    connection = client.get_connection(args.name)
    answer = client.add_connection_to_workspace(connection["id"], args.workspace_id)
    _show(args, answer, [f"connection {args.name} (id {connection['id']}) added to workspace {args.workspace_id}"])


# -- argument parsing ---------------------------------------------------------------------------
def _common(parser, settings_cls):
    settings_cls.register_argparse_arguments(parser)
    add_json_flag(parser)


def _task_start_arguments(p, timeout=True):
    p.add_argument("orch_id", help="the orchestration's id (from orchzip upload), or its first characters")
    p.add_argument("--workspace-id", type=int, help="the workspace (default: the orchestration's)")
    p.add_argument("--name", help="a name for the task")
    p.add_argument("--args", help="task args as a JSON object (what wl.task_args() returns)")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="one task arg; repeatable")
    if timeout:
        p.add_argument("--timeout", type=int, help="seconds before a run is killed (timed_out)")


def register(subparsers):
    from orchzip.mlops import Settings

    p = subparsers.add_parser(
        "upload", help="upload an orchestration zip (or folder) to a Wallaroo instance",
        description="Upload an orchestration to a Wallaroo instance (or orchzip serve) over the MLOps API: "
        "POST /v1/api/orchestration/upload. A folder is built into a zip first. The instance and "
        "credentials come from --url/--token (or --user/--password) or WALLAROO_URL, WALLAROO_TOKEN, "
        "WALLAROO_USER, WALLAROO_PASSWORD. Prints the orchestration id.")
    p.add_argument("target", help="the orchestration zip (or folder)")
    p.add_argument("--workspace-id", type=int, required=True, help="the workspace to upload into")
    p.add_argument("--name", help="the orchestration's name")
    p.add_argument("--wait", action="store_true", help="wait until it is ready (or error), showing its status")
    p.add_argument("--wait-timeout", type=float, default=900.0, help="seconds to wait at most (default 900)")
    add_wallaroo_version_flag(p, "of the instance, whose SDK pins requirements.txt is checked against")
    p.add_argument("--no-check", action="store_true",
                   help="upload without resolving requirements.txt beside the instance's wallaroo SDK")
    _common(p, Settings)
    p.set_defaults(func=cmd_upload)

    remote = subparsers.add_parser(
        "remote", help="orchestrations, tasks, runs, logs and connections on a Wallaroo instance",
        description="Work with a Wallaroo instance (or orchzip serve) over its MLOps API. Instance and "
        "credentials: --url/--token/--user/--password or WALLAROO_URL, WALLAROO_TOKEN, WALLAROO_USER, "
        "WALLAROO_PASSWORD.")
    sub = remote.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("run-once", help="run an orchestration once (a run-once task); prints the task id")
    _task_start_arguments(p)
    p.add_argument("--wait", action="store_true", help="wait for the task to end; exit 1 unless it succeeded")
    p.add_argument("--wait-timeout", type=float, default=3600.0, help="seconds to wait at most (default 3600)")
    _common(p, Settings)
    p.set_defaults(func=cmd_run_once)

    p = sub.add_parser("schedule", help="run an orchestration on a cron schedule (run_scheduled)")
    _task_start_arguments(p)
    p.add_argument("--cron", help='the schedule (required): 5-field cron as for orchzip schedule, e.g. '
                   '"*/5 * * * *" (quote it)')
    p.add_argument("--schedule", dest="cron", help=argparse.SUPPRESS)  # the older spelling
    _common(p, Settings)
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("run-continuously", help="keep an orchestration running until killed (run_continuously)")
    _task_start_arguments(p, timeout=False)
    _common(p, Settings)
    p.set_defaults(func=cmd_run_continuously)

    from orchzip.commands import remote_tasks
    remote_tasks.register(sub, Settings)

    p = sub.add_parser("orchestrations", help="list uploaded orchestrations")
    p.add_argument("--workspace-id", type=int, help="only this workspace's")
    _common(p, Settings)
    p.set_defaults(func=cmd_orchestrations)

    p = sub.add_parser("orchestration", help="one orchestration (its packaging status)")
    p.add_argument("orch_id")
    _common(p, Settings)
    p.set_defaults(func=cmd_orchestration)

    _register_named(sub, Settings)


def _register_named(sub, Settings):
    ws = sub.add_parser("workspaces", help="workspaces on the instance")
    wsub = ws.add_subparsers(dest="ws_action", metavar="ACTION", required=True)
    p = wsub.add_parser("list", help="list workspaces")
    _common(p, Settings)
    p.set_defaults(func=cmd_workspaces_list)
    p = wsub.add_parser("create", help="create a workspace; prints its id")
    p.add_argument("name")
    _common(p, Settings)
    p.set_defaults(func=cmd_workspaces_create)

    conns = sub.add_parser("connections", help="data connections on the instance")
    csub = conns.add_subparsers(dest="conn_action", metavar="ACTION", required=True)
    p = csub.add_parser("create", help="create a connection; prints its id")
    p.add_argument("name")
    p.add_argument("--type", required=True, help="e.g. BIGQUERY, ODBC, HTTP")
    p.add_argument("--details", help="the details as a JSON object")
    p.add_argument("--details-file", help="a JSON file with the details (e.g. a service-account key)")
    _common(p, Settings)
    p.set_defaults(func=cmd_connections_create)
    p = csub.add_parser("get", help="one connection (secret-looking details hidden)")
    p.add_argument("name")
    _common(p, Settings)
    p.set_defaults(func=cmd_connections_get)
    p = csub.add_parser("list", help="list connections")
    p.add_argument("--workspace-id", type=int, help="only those added to this workspace")
    _common(p, Settings)
    p.set_defaults(func=cmd_connections_list)
    p = csub.add_parser("delete", help="delete a connection")
    p.add_argument("name")
    _common(p, Settings)
    p.set_defaults(func=cmd_connections_delete)
    p = csub.add_parser("add-to-workspace", help="make a connection available in a workspace")
    p.add_argument("name", help="the connection's name")
    p.add_argument("--workspace-id", type=int, required=True)
    _common(p, Settings)
    p.set_defaults(func=cmd_connections_add)
