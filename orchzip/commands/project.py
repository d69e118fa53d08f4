"""`orchzip init`, `orchzip apply` and `orchzip export`: the project file, orchzip.yaml."""

import os
import sys

from orchzip.errors import ConfigError
from orchzip.commands._output import add_json_flag, env_progress, note, print_json

APPLY_HELP = """\
Make the local state match orchzip.yaml: create, update and delete workspaces, connections,
models, pipelines, orchestrations and tasks so that the state holds what the file declares and
nothing else (workspaces are never deleted). The plan is printed first; --dry-run stops
there. Applying the same file twice changes nothing the second time.

A model whose file changed is uploaded as its next version, and pipelines whose steps name it
without a version (steps: [MODEL]) move to that version; MODEL:N keeps version N.

Scheduled tasks are registered as `orchzip schedule` does (their orchestration built into a
zip, their environment prepared); `orchzip scheduler` fires them. Run-once and continuous
(continuously: true) tasks are recipes: `orchzip run NAME` runs one with its settings, a
continuous one kept running as `orchzip run --continuously` does.

The file is the nearest orchzip.yaml at or above the current folder (or -f FILE); the state
is the .orchzip folder beside it, unless --state-dir or ORCHZIP_STATE_DIR say otherwise.

With --remote the same file is applied to a Wallaroo instance (or orchzip serve) over its
MLOps API (--url/--token or WALLAROO_URL, WALLAROO_TOKEN, ...): workspaces and connections
are created (a connection whose details changed is deleted and created again; ${VAR} in
details are read from your environment, as the instance stores details as they are),
orchestrations are uploaded when their zip changed and waited for until ready, and tasks are
started: a run-once task runs once per zip and args, a scheduled or continuous one replaces
its predecessor when it changed, and one the file no longer names is killed. Nothing the file
does not name is deleted. Models, pipelines and local-only task settings (tz, overlap, misfire_grace,
retries, retry_backoff, no_env) are listed as notes and not applied.
"""

SYMBOLS = {"create": "+", "update": "~", "delete": "-"}


def _project_file(args):
    from orchzip.runtime.project import PROJECT_FILE, find_root
    if args.file:
        return os.path.abspath(args.file)
    root = find_root(os.getcwd())
    path = os.path.join(root or os.getcwd(), PROJECT_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"no {PROJECT_FILE} in {os.getcwd()} or any folder above it; "
                          f"write one with: orchzip init (or orchzip export), or give -f FILE")
    return path


def _state_dir(args, project_file):
    """--state-dir or $ORCHZIP_STATE_DIR when given, else the state beside the project file."""
    from orchzip.runtime.project import state_dir_for
    if getattr(args, "state_dir_given", True):
        return os.path.abspath(args.state_dir)
    return state_dir_for(os.path.dirname(project_file))


def _describe(change):
    text = f"  {SYMBOLS[change.action]} {change.kind} {change.name}"
    if change.action == "update":
        text += f": {', '.join(change.changed_keys)} changed"
    elif change.kind == "connection" and change.action == "create":
        text += f" ({change.desired['type']})"
    elif change.kind == "task" and change.action == "create":
        text += f" ({_task_kind(change.desired)})"
    return text


def _task_kind(settings):
    if settings.get("continuously") or settings.get("kind") == "continuous":
        return "continuous"
    return f"schedule {settings['schedule']!r}" if settings.get("schedule") else "run-once"


def cmd_apply(args):
    if args.remote:
        return cmd_apply_remote(args)
    given = [flag for flag, value in (("--url", args.url), ("--token", args.token), ("--user", args.user),
                                      ("--password", args.password)) if value]
    if given:
        raise ConfigError(f"{given[0]} names a Wallaroo instance, which only apply --remote uses; "
                          "add --remote or leave it out")
    from orchzip.runtime import project
    from orchzip.runtime.store import Store, DB_NAME
    path = _project_file(args)
    state_dir = _state_dir(args, path)
    exists = os.path.isfile(os.path.join(state_dir, DB_NAME))
    store = Store(state_dir) if exists or not args.dry_run else None  # a dry run creates nothing
    with project.plan(store, path) as plan:
        if not args.json:
            _print_plan(plan, path, state_dir)
        if plan.changes and not args.dry_run:
            project.apply(store, plan, on_env_progress=env_progress)
        elif plan.adoptions and not args.dry_run:
            project.apply(store, plan)  # only records tasks the file names as the project's
        if args.json:
            print_json({"file": path, "state_dir": state_dir, "dry_run": args.dry_run,
                        "changes": [c.as_dict() for c in plan.changes], **plan.counts()})
        elif plan.changes:
            print("dry run: nothing changed" if args.dry_run else "applied")


def _print_plan(plan, path, state_dir):
    if not plan.changes:
        print(f"nothing to change: {state_dir} matches {path}")
        return
    print(f"plan for {state_dir} from {path}:")
    for change in plan.changes:
        print(_describe(change))
    counts = plan.counts()
    print(f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete")


def cmd_apply_remote(args):
    from orchzip.commands._instance import client_from_args
    from orchzip.runtime import project
    path = _project_file(args)
    client = client_from_args(args)
    from orchzip.mlops import sanitize_url
    where = sanitize_url(client.settings.url)
    with project.plan_remote(client, path) as plan:
        if not args.json:
            _print_plan(plan, path, where)
            for text in plan.notes:
                print(f"note: {text}", file=sys.stderr)
        started = {}
        if plan.changes and not args.dry_run:
            started = project.apply_remote(client, plan, wait_timeout=args.wait_timeout,
                                           on_progress=None if args.json else note)
        if args.json:
            print_json({"file": path, "remote": where, "dry_run": args.dry_run,
                        "changes": [c.as_dict() for c in plan.changes], **plan.counts(), "notes": plan.notes,
                        "started": started})
        elif plan.changes:
            print("dry run: nothing changed" if args.dry_run else "applied")


def cmd_export(args):
    from orchzip.runtime import project
    from orchzip.runtime.store import Store, DB_NAME
    state_dir = os.path.abspath(args.state_dir)
    if not os.path.isfile(os.path.join(state_dir, DB_NAME)):
        raise ConfigError(f"no orchzip state in {state_dir}: nothing to export "
                          "(give --state-dir, or run from the project's folder)")
    target = "-" if args.output == "-" else os.path.abspath(args.output or project.PROJECT_FILE)
    text, notes = project.export(Store(state_dir), os.path.join(os.getcwd(), "x") if target == "-" else target,
                                 include_secrets=args.include_secrets)
    if target == "-":
        sys.stdout.write(text)
    else:
        _write_new(target, text, args.force)
        print(f"wrote {target}", file=sys.stderr)
    for text in notes:
        print(f"note: {text}", file=sys.stderr)


def _write_new(target, text, force):
    if os.path.exists(target) and not force:
        with open(target, encoding="utf-8") as fh:
            if fh.read() == text:
                return
        raise ConfigError(f"{target} exists and differs; give --force to overwrite it, or -o OTHER.yaml")
    with open(target + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(target + ".tmp", target)


def cmd_init(args):
    from orchzip.runtime import project
    from orchzip.runtime.project._starter import STARTER_TASK
    folder = os.path.abspath(args.folder)
    written = project.init(folder)
    if args.json:
        print_json({"folder": folder, "files": written, "task": STARTER_TASK})
        return
    for path in written:
        print(f"wrote {os.path.relpath(path)}")
    where = "" if folder == os.getcwd() else f"cd {os.path.relpath(folder)} && "
    print(f"next: {where}orchzip apply && orchzip run {STARTER_TASK}", file=sys.stderr)


def register(subparsers):
    import argparse
    p = subparsers.add_parser(
        "init", help="write a starter project: orchzip.yaml, an orchestration, a model and data",
        description="Write a starter project into FOLDER (default: here): orchzip.yaml declaring a "
        "connection to read (data/houses.csv), one to write (data/predictions.parquet), a pipeline "
        "(model/model.onnx, a small linear house-price model), the orchestration "
        "orchestrations/predict and a run-once task. Then: orchzip apply && orchzip run predict. "
        "Refuses to overwrite any file.",
    )
    p.add_argument("folder", nargs="?", default=".", help="where to write the project (created if missing)")
    add_json_flag(p)
    p.set_defaults(func=cmd_init)

    p = subparsers.add_parser(
        "apply", help="make the local state match orchzip.yaml (plan first; --dry-run)",
        description=APPLY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--file", help="the project file (default: the nearest orchzip.yaml at or above here)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--remote", action="store_true",
                   help="apply to a Wallaroo instance (or orchzip serve) instead of the local state")
    p.add_argument("--wait-timeout", type=float, default=900.0,
                   help="with --remote: seconds to wait at most for each upload to be ready (default 900)")
    from orchzip.mlops import Settings
    Settings.register_argparse_arguments(p, retries_alias=False)
    add_json_flag(p)
    p.set_defaults(func=cmd_apply)

    p = subparsers.add_parser(
        "export", help="write orchzip.yaml from the local state",
        description="Write the state's workspaces, connections, pipelines, orchestrations and tasks "
        "as an orchzip.yaml. Paths under the file's folder are written relative to it. Secret-looking "
        "literal values in connection details (private_key, token, password, ...) are written as "
        "${VAR} references unless --include-secrets.",
    )
    p.add_argument("-o", "--output", help="where to write (default: ./orchzip.yaml; - for stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file that differs")
    p.add_argument("--include-secrets", action="store_true",
                   help="write secret-looking values as they are (the file then holds secrets: keep it out of git)")
    p.set_defaults(func=cmd_export)
