"""`orchzip remote tasks list|show|runs|logs|kill|pause|resume`: a Wallaroo instance's tasks with the verbs,
options and id prefixes of the local `orchzip tasks ...`.

The older spellings (`remote task ID`, `remote runs ID`, `remote logs RUN_ID [--task]`,
`remote kill ID`) stay as hidden aliases.
"""

import argparse
import sys

from orchzip.commands._output import print_json, print_table
from orchzip.errors import ConfigError

EXIT_FAILED = 1
FULL_ID = 36  # a UUID as Wallaroo gives task, run and orchestration ids


# -- id prefixes --------------------------------------------------------------------------------
def _unique(prefix, ids, kind, where, hint):
    matches = sorted({i for i in ids if str(i).startswith(prefix)})
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"no {kind} with an id starting {prefix!r} on {where}; list them with: {hint}")
    raise ConfigError(f"{kind} id {prefix!r} is ambiguous on {where} ({len(matches)} match); give more characters")


def _where(client):
    from orchzip.mlops import sanitize_url
    return sanitize_url(client.settings.url)


def resolve_task(client, task_id):
    """The full id of the task ``task_id`` names (a full id, or its first characters)."""
    if len(task_id) >= FULL_ID:
        return task_id
    return _unique(task_id, [t["id"] for t in client.list_tasks()], "task", _where(client),
                   "orchzip remote tasks list")


def resolve_orchestration(client, orch_id):
    if len(orch_id) >= FULL_ID:
        return orch_id
    return _unique(orch_id, [o["id"] for o in client.list_orchestrations()], "orchestration", _where(client),
                   "orchzip remote orchestrations")


def resolve_run(client, task_id, run_id):
    """A run of task ``task_id``, named by its id or first characters."""
    runs = client.list_task_runs(task_id)
    return _unique(run_id, [r["run_id"] for r in runs], f"run of task {task_id}", _where(client),
                   f"orchzip remote tasks runs {task_id}")


# -- commands -----------------------------------------------------------------------------------
def _client(args):
    from orchzip.commands._instance import client_from_args
    return client_from_args(args)


def cmd_list(args):
    from orchzip.mlops import TASK_KINDS
    rows = _client(args).list_tasks(workspace_id=args.workspace_id, killed=True if args.killed else None)
    for row in rows:
        row["kind"] = TASK_KINDS.get(row.get("run_type"), row.get("run_type") or "")
    if args.kind:
        rows = [r for r in rows if r["kind"] == args.kind]
    if args.status:
        rows = [r for r in rows if r["status"] == args.status]
    if args.json:
        return print_json(rows)
    for row in rows:
        row["last_run"] = row["last_runs"][0]["status"] if row.get("last_runs") else ""
    print_table(rows, ["id", "name", "kind", "status", "workspace_id", "created_at", "last_run"])


def cmd_show(args):
    client = _client(args)
    task = client.get_task(resolve_task(client, args.task_id))
    if args.json:
        return print_json(task)
    for key in ("id", "name", "run_type", "status", "killed", "schedule", "workspace_id", "orch_id", "input_data",
                "created_at", "updated_at"):
        if key in task:
            print(f"{key:12} {'' if task.get(key) is None else task.get(key)}")
    print("last runs:")
    print_table(task.get("last_runs") or [], ["run_id", "status", "created_at", "updated_at"])


def cmd_runs(args):
    client = _client(args)
    rows = client.list_task_runs(resolve_task(client, args.task_id), limit=args.limit, status=args.status)
    if args.json:
        return print_json(rows)
    print_table(rows, ["run_id", "status", "created_at", "updated_at"])


def cmd_logs(args):
    client = _client(args)
    task_id = resolve_task(client, args.task_id)
    if args.run:
        run_id = resolve_run(client, task_id, args.run)
    else:
        runs = client.list_task_runs(task_id, limit=1)
        if not runs:
            raise ConfigError(f"task {task_id} has no runs yet; see: orchzip remote tasks show {task_id}")
        run_id = runs[0]["run_id"]
    _print_logs(args, client, run_id)


def _print_logs(args, client, run_id):
    logs = client.get_logs(run_id, lines=args.lines)
    if args.json:
        return print_json({"id": run_id, "logs": logs})
    for line in logs:
        print(line if args.raw else _log_line(line))


def _log_line(line):
    """``TIME TEXT`` of a Wallaroo log line ``TIME stdout|stderr F|P TEXT``, as the SDK shows it."""
    parts = line.split(" ", 3)
    if len(parts) == 4 and parts[1] in ("stdout", "stderr") and parts[2] in ("F", "P"):
        return f"{parts[0]} {parts[3]}"
    return line


def cmd_old_logs(args):
    """`remote logs RUN_ID` (or `--task TASK_ID`): the older spelling."""
    client = _client(args)
    if args.task:
        args.task_id, args.run = args.run_id, None
        return cmd_logs(args)
    _print_logs(args, client, args.run_id)


def cmd_kill(args):
    client = _client(args)
    task = client.kill_task(resolve_task(client, args.task_id))
    if args.json:
        return print_json(task)
    print(f"task {task['id']} {task['status']}")


def cmd_pause(args):
    client = _client(args)
    task = client.pause_task(resolve_task(client, args.task_id), pause=args.tasks_action == "pause")
    if args.json:
        return print_json(task)
    print(f"task {task['id']} {task['status']}")


# -- argument parsing ---------------------------------------------------------------------------
def _leaf(sub, name, help_, func, settings_cls, hidden=False, under_tasks=True):
    """A command under `remote tasks` (or a hidden old alias): the instance flags, --json.

    Under `remote tasks`, which takes the same flags, one not given keeps the value given
    before the verb (`remote tasks --url U list`)."""
    p = sub.add_parser(name, **({} if hidden else {"help": help_}), description=help_)
    settings_cls.register_argparse_arguments(p, keep_given=under_tasks)
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS if under_tasks else False,
                   help="print machine-readable JSON")
    p.set_defaults(func=func)
    return p


def _task_arg(p):
    p.add_argument("task_id", help="a task id or its first characters")


def _list_options(p):
    p.add_argument("--workspace-id", type=int, help="only tasks of this workspace")
    p.add_argument("--killed", action="store_true", help="only killed tasks")
    p.add_argument("--kind", choices=("run_once", "scheduled", "continuous"))
    p.add_argument("--status", help="only tasks with this status")


def _logs_options(p):
    p.add_argument("--lines", type=int, help="only the last N lines")
    p.add_argument("--raw", action="store_true", help="the lines as Wallaroo gives them: time, stream, F|P flag, text")


def register(sub, settings_cls):
    """`remote tasks ...` on ``sub`` (the `remote` subparsers), and the older spellings."""
    tasks = sub.add_parser(
        "tasks", help="tasks on the instance: list (the default), show, runs, logs, kill, pause, resume",
        description="The instance's tasks, with the verbs and options of `orchzip tasks`. Task ids may be "
        "given by their first characters. `orchzip remote tasks` alone lists them.")
    settings_cls.register_argparse_arguments(tasks)
    tasks.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _list_options(tasks)
    tasks.set_defaults(func=cmd_list)
    verbs = tasks.add_subparsers(dest="tasks_action", metavar="ACTION")

    p = _leaf(verbs, "list", "list tasks: kind, status and their last run's outcome", cmd_list, settings_cls)
    _list_options(p)
    for name in ("show", "status"):
        p = _leaf(verbs, name, "one task: status, schedule, args and its last runs", cmd_show, settings_cls,
                  hidden=name == "status")
        _task_arg(p)
    p = _leaf(verbs, "runs", "a task's runs, newest first", cmd_runs, settings_cls)
    _task_arg(p)
    p.add_argument("--status", help="only runs with this status (running, success, failure, killed, timed_out)")
    p.add_argument("--limit", type=int, help="at most this many")
    p = _leaf(verbs, "logs", "what a task's latest run (or --run) printed", cmd_logs, settings_cls)
    _task_arg(p)
    p.add_argument("--run", metavar="RUN_ID", help="this run (or its first characters) instead of the latest")
    _logs_options(p)
    p = _leaf(verbs, "kill", "kill a task (its status becomes pending_kill, then killed)", cmd_kill, settings_cls)
    _task_arg(p)
    p = _leaf(verbs, "pause", "stop firing a scheduled task (task/pause)", cmd_pause, settings_cls)
    _task_arg(p)
    p = _leaf(verbs, "resume", "fire a paused task again", cmd_pause, settings_cls)
    _task_arg(p)

    # The older spellings, kept working and out of the help.
    p = _leaf(sub, "task", "one task and its last runs", cmd_show, settings_cls, hidden=True, under_tasks=False)
    _task_arg(p)
    p = _leaf(sub, "runs", "the runs of a task", cmd_runs, settings_cls, hidden=True, under_tasks=False)
    _task_arg(p)
    p.add_argument("--status")
    p.add_argument("--limit", type=int)
    p = _leaf(sub, "logs", "what a run printed", cmd_old_logs, settings_cls, hidden=True, under_tasks=False)
    p.add_argument("run_id", help="a run id (or, with --task, a task id: its latest run)")
    p.add_argument("--task", action="store_true", help="RUN_ID is a task id: show its latest run's logs")
    _logs_options(p)
    p = _leaf(sub, "kill", "kill a task", cmd_kill, settings_cls, hidden=True, under_tasks=False)
    _task_arg(p)


__all__ = ["register", "resolve_task", "resolve_orchestration", "resolve_run"]
