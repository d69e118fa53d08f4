"""`orchzip connections ...` and `orchzip pipelines ...`: the local named resources."""

import json
import os
import sys

from orchzip.errors import ConfigError
from orchzip.commands._output import add_json_flag, print_deleted, print_json, print_table
from orchzip.runtime.redact import mask_details

MAX_DETAILS_FILE = 1 << 20


def parse_json_object(text, what):
    """``text`` as a JSON object, or one line saying where it is wrong (never echoing it: it may hold secrets)."""
    from orchzip.runtime.connection_schemas import load_json
    try:
        value = load_json(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{what} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except ValueError as err:
        raise ConfigError(f"{what} is not valid JSON ({err}); quote it as a string or give a number") from None
    except RecursionError:
        raise ConfigError(f"{what} nests too deeply to read; flatten it") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object like {{\"key\": \"value\"}}, not {type(value).__name__}")
    return value


def read_details(args):
    """``--details`` merged over ``--details-file``: the details a create command sends."""
    details = parse_json_object(args.details, "--details") if args.details else {}
    if args.details_file:
        path = args.details_file
        try:
            with open(path, encoding="utf-8-sig") as fh:
                text = fh.read(MAX_DETAILS_FILE + 1)
        except FileNotFoundError:
            raise ConfigError(f"--details-file {path}: no such file") from None
        except IsADirectoryError:
            raise ConfigError(f"--details-file {path}: is a folder, not a file") from None
        except UnicodeDecodeError:
            raise ConfigError(f"--details-file {path}: is not UTF-8 text; save it as UTF-8 JSON") from None
        except OSError as err:
            raise ConfigError(f"--details-file {path}: cannot read it ({err.strerror})") from None
        if len(text) > MAX_DETAILS_FILE:
            raise ConfigError(f"--details-file {path}: over {MAX_DETAILS_FILE:,} characters; details point at data, "
                              f"they do not hold it")
        details = {**parse_json_object(text, f"--details-file {path}"), **details}
    return details


def _store(args, create=True):
    from orchzip.runtime.store import Store
    return Store(args.state_dir, create=create)  # create=False: a read that never makes a state


def _absolute_paths(connection_type, details):
    # Relative paths are relative to where the user typed the command, not to a run's
    # work directory: store them absolute.
    if connection_type.upper() in ("DUCKDB", "FILE") and isinstance(details.get("path"), str):
        if "${" not in details["path"]:
            details["path"] = os.path.abspath(os.path.expanduser(details["path"]))
    return details


def cmd_connections_create(args):
    from orchzip.runtime.connection_schemas import note_for
    details = read_details(args)
    store = _store(args)
    workspaces = [store.get_workspace(name) for name in args.workspace or []]  # all known before creating
    row = store.create_connection(args.name, args.type, _absolute_paths(args.type, details))
    for workspace in workspaces:
        store.add_connection_to_workspace(row["id"], workspace["id"])
    note = note_for(row["type"])
    if note:
        print(f"orchzip: note: {note}", file=sys.stderr)
    return _show_connection(args, store.get_connection(args.name) if workspaces else row)


def cmd_connections_get(args):
    return _show_connection(args, _store(args, create=False).get_connection(args.name))


def _show_connection(args, row):
    row = dict(row, details=mask_details(row["details"]))
    if args.json:
        print_json(row)
    else:
        print(f"{row['name']} ({row['type']}, id {row['id']})")
        if row["workspace_names"]:
            print(f"workspaces: {', '.join(row['workspace_names'])}")
        if row["details"] or not row.get("details_error"):
            print(json.dumps(row["details"], indent=2, sort_keys=True))
        if row.get("details_error"):
            print(f"problem: {row['details_error']}")


def cmd_connections_list(args):
    rows = [dict(r, details=mask_details(r["details"])) for r in _store(args, create=False).list_connections()]
    if args.json:
        print_json(rows)
    else:
        print_table([dict(r, details=_details_cell(r), workspaces=",".join(r["workspace_names"]) or "-")
                     for r in rows], ["name", "type", "workspaces", "details"])


def _details_cell(row):
    if row.get("details_error"):
        return "(" + row["details_error"].split(";")[0] + "; see: orchzip connections get " + row["name"] + ")"
    return json.dumps(row["details"], sort_keys=True)[:70]


def cmd_connections_delete(args):
    _store(args).delete_connection(args.name)
    print_deleted(args, "connection", args.name)


def cmd_pipelines_create(args):
    from orchzip.runtime.registry import create_pipeline
    if bool(args.model) == bool(args.step):
        raise ConfigError("give a pipeline either --model FILE.onnx or one or more --step MODEL[:VERSION] "
                          "(models registered with: orchzip models upload NAME FILE)")
    store = _store(args)
    workspace_id = store.get_workspace(args.workspace)["id"] if args.workspace else None
    if args.step:
        row = create_pipeline(store, args.name, args.step, tensor_column=args.tensor_column, replace=args.replace,
                              workspace_id=workspace_id)
    else:
        row = store.create_pipeline(args.name, args.model, tensor_column=args.tensor_column, replace=args.replace,
                                    workspace_id=workspace_id)
    row = _with_steps(store, row)
    if args.json:
        print_json(row)
    else:
        where = f" (workspace {row['workspace_name']})" if row["workspace_name"] else ""
        target = " -> ".join(row["steps"]) if args.step else row["model_path"]
        print(f"pipeline {row['name']} -> {target}{where}")


def _with_steps(store, row):
    """A pipeline row with ``steps``: ``NAME:VERSION`` of each model step (none for a --model file)."""
    from orchzip.runtime.registry import steps_of
    return dict(row, steps=[f"{m['name']}:{m['version']}" for m in steps_of(store, row)])


def cmd_pipelines_list(args):
    store = _store(args, create=False)
    rows = [_with_steps(store, r) for r in store.list_pipelines()]
    if args.json:
        print_json(rows)
    else:
        print_table([dict(r, workspace=r["workspace_name"] or "(default)",
                          model=" -> ".join(r["steps"]) or r["model_path"]) for r in rows],
                    ["name", "workspace", "model"])


def cmd_pipelines_delete(args):
    _store(args).delete_pipeline(args.name)
    print_deleted(args, "pipeline", args.name)


def register(subparsers):
    conn = subparsers.add_parser(
        "connections", help="named data connections (DUCKDB, FILE, BIGQUERY, HTTP) for local runs",
        description="Named data connections that tasks look up by name. Details may refer to "
        "environment variables as ${VAR}; they are expanded only when a task runs.",
    )
    sub = conn.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("create", help="create a connection")
    p.add_argument("name")
    p.add_argument("--type", required=True, help="DUCKDB, FILE, BIGQUERY or HTTP (orchzip reads these; "
                   "any other name is kept for orchestrations that read details() themselves, or for Wallaroo)")
    p.add_argument("--details", default="{}", help='JSON object, e.g. \'{"path": "data.duckdb", "table": "houses"}\'')
    p.add_argument("--details-file", help="a JSON file merged under --details (e.g. a service-account key)")
    p.add_argument("--workspace", action="append", metavar="NAME",
                   help="put the connection in this workspace (repeatable; see orchzip workspaces)")
    add_json_flag(p)
    p.set_defaults(func=cmd_connections_create)
    for action, func, text in (("get", cmd_connections_get, "show one connection (secrets masked)"),
                               ("delete", cmd_connections_delete, "delete a connection")):
        p = sub.add_parser(action, help=text)
        p.add_argument("name")
        add_json_flag(p)
        p.set_defaults(func=func)
    p = sub.add_parser("list", help="list connections (secrets masked)")
    add_json_flag(p)
    p.set_defaults(func=cmd_connections_list)

    pipes = subparsers.add_parser(
        "pipelines", help="named local pipelines (name -> model steps, or an ONNX model file)",
        description="Local pipelines: a name that tasks infer through, bound to a chain of registered model "
        "versions (--step, as Wallaroo pipelines chain model steps) or to one ONNX model file (--model).",
    )
    sub = pipes.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("create", help="create a pipeline of registered models (--step) or of an ONNX file (--model)")
    p.add_argument("name")
    p.add_argument("--model", help="path of the .onnx model (a pipeline of this one file)")
    p.add_argument("--step", action="append", metavar="MODEL[:VERSION]",
                   help="a registered model version (default: its newest), repeatable, in order: each step's "
                   "outputs are the next step's inputs (see orchzip models upload)")
    p.add_argument("--tensor-column", help="input column holding each row's features for the first (ONNX) model "
                   "(default: tensor)")
    p.add_argument("--replace", action="store_true", help="replace a pipeline of the same name")
    p.add_argument("--workspace", metavar="NAME",
                   help="the workspace the pipeline is in (default: the default workspace a task starts in)")
    add_json_flag(p)
    p.set_defaults(func=cmd_pipelines_create)
    p = sub.add_parser("list", help="list pipelines")
    add_json_flag(p)
    p.set_defaults(func=cmd_pipelines_list)
    p = sub.add_parser("delete", help="delete a pipeline")
    p.add_argument("name")
    add_json_flag(p)
    p.set_defaults(func=cmd_pipelines_delete)
