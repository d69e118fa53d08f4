"""`orchzip run` (a run-once task, locally) and `orchzip runs list|show|logs`."""

import json
import os
import sys

from orchzip.errors import ConfigError
from orchzip.runtime.task_logs import parse_line, read_lines
from orchzip.commands._output import add_json_flag, add_wallaroo_version_flag, print_json, print_table
from orchzip.commands.state import parse_json_object
from orchzip.commands._running import (
    Progress, describe_run, environment_options, open_store, run_seconds, stop_signals_interrupt,
)

EXIT_TASK_FAILED = 1


def parse_task_args(args_json, pairs):
    """The task args from ``--args JSON`` and ``--arg k=v`` (v parsed as JSON when it is)."""
    task_args = parse_json_object(args_json, "--args") if args_json else {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--arg {pair!r} is not KEY=VALUE")
        try:
            task_args[key] = json.loads(value)
        except ValueError:
            task_args[key] = value
    return task_args


def execute(args, target, task_args):
    """Run ``target`` once with the CLI's progress display; returns the final run record."""
    from orchzip.runtime.runner import run_once
    from orchzip.runtime.scheduler.control import kill_requested
    from orchzip.runtime.store import Store

    store = Store(args.state_dir)
    progress = Progress(enabled=not args.json and sys.stderr.isatty())
    try:
        with stop_signals_interrupt() as stop:
            run = run_once(
                store, target, args=task_args, timeout=args.timeout, name=args.name,
                log_max_bytes=getattr(args, "log_max_bytes", None),
                on_event=progress.on_event, on_output=None if args.json else progress.on_output,
                # a stop signal, or `orchzip tasks kill` from another process
                should_stop=stop.polled(lambda task: kill_requested(store, task["id"])),
                wallaroo_version=getattr(args, "wallaroo_version", None), **environment_options(args),
            )
    finally:
        progress.close()
    if stop.reason:  # the run was killed and recorded; the command ends as an interrupted one
        raise KeyboardInterrupt(stop.reason)
    return run


def cmd_run(args):
    task_args = parse_task_args(args.args, args.arg)
    target = args.target
    if not os.path.exists(target):
        # a task or orchestration named in the project's orchzip.yaml (orchzip apply put it in the state)
        from orchzip.runtime.project import run_recipe
        recipe = run_recipe(args.state_dir, target)
        task_args = {**recipe["args"], **task_args}
        args.name = args.name or target
        args.timeout = args.timeout if args.timeout is not None else recipe["timeout"]
        args.no_env = args.no_env or recipe["no_env"]
        _take_recipe_options(args, recipe)
        target = recipe["target"]
    from orchzip.commands import continuous
    if args.continuously:
        return continuous.cmd_run_continuously(args, target, task_args)
    continuous.refuse_options_of_continuous(args)
    run = execute(args, target, task_args)
    if args.json:
        print_json(run)
    else:
        print(describe_run(run), file=sys.stderr)
        if run.get("note"):  # how the status was settled from the sinks' commits
            print(f"orchzip: note: {run['note']}", file=sys.stderr)
        if run["status"] != "success":
            print(f"orchzip: error: {run['error'] or run['status']} (log: {run['log_path']})", file=sys.stderr)
    return 0 if run["status"] == "success" else EXIT_TASK_FAILED


def _take_recipe_options(args, recipe):
    """A declared task's continuously, restart policy, log cap and release, where the command
    line did not give its own."""
    args.continuously = args.continuously or recipe["continuously"]
    flags = {"backoff": "backoff", "max_backoff": "max_backoff", "stable_after": "stable_after",
             "crash_loop_after": "crash_loop_after"}
    from orchzip.commands.continuous import DEFAULTS
    for key, attr in flags.items():
        if recipe["restart"] and getattr(args, attr) == DEFAULTS[attr]:
            setattr(args, attr, recipe["restart"][key])
    if getattr(args, "log_max_bytes", None) is None:
        args.log_max_bytes = recipe["log_max_bytes"]
    if getattr(args, "wallaroo_version", None) is None:
        args.wallaroo_version = recipe["wallaroo_version"]


def cmd_runs_list(args):
    rows = open_store(args, create=False).list_runs(task_id=args.task, status=args.status, limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        print_table([dict(r, seconds=_fmt_seconds(r)) for r in rows],
                    ["id", "task_id", "status", "created_at", "seconds", "rows_written"])


def _fmt_seconds(run):
    seconds = run_seconds(run)
    return "" if seconds is None else f"{seconds:.2f}"


def _chosen_run(args):
    """The run named by RUN_ID, or with --last the newest run."""
    store = open_store(args, create=False)
    if args.last == bool(args.run_id):
        raise ConfigError("name a run: give a RUN_ID (or its first characters) or --last, not both")
    if args.last:
        newest = store.list_runs(limit=1)
        if not newest:
            raise ConfigError(f"no runs yet in {store.state_dir}; start one with: orchzip run ZIP_OR_FOLDER")
        return newest[0]
    return store.get_run(args.run_id)


def cmd_runs_show(args):
    run = _chosen_run(args)
    if args.json:
        print_json(dict(run, log_truncated=bool(run.get("log_dropped_bytes"))))
        return
    for key, value in run.items():
        if key not in ("log_bytes", "log_dropped_bytes"):
            print(f"{key:14} {'' if value is None else value}")
    print(f"{'log':14} {describe_log(run)}")


def describe_log(run):
    """One line on how much of what the run printed its log kept."""
    if not run.get("log_bytes"):
        return "" if not run.get("log_path") else "complete"
    if not run.get("log_dropped_bytes"):
        return f"complete ({_mib(run['log_bytes'])})"
    return (f"truncated: {_mib(run['log_dropped_bytes'])} of the {_mib(run['log_bytes'])} the run printed "
            "left out in the middle (the log keeps its first and its most recent lines)")


def _mib(n):
    return f"{n / 1048576:.1f} MiB" if n >= 104858 else f"{n} bytes"


def cmd_runs_logs(args):
    run = _chosen_run(args)
    print_log(run, lines=args.lines, json_=args.json, timestamps=args.timestamps, raw=args.raw)


def print_log(run, lines=None, json_=False, timestamps=False, raw=False):
    """Print a run's log: its text (default), with times, raw stored lines, or JSON as the API gives it."""
    if not run["log_path"]:
        raise ConfigError(f"run {run['id']} has no log: it failed before its task started ({run['error']})")
    stored = read_lines(run["log_path"], lines)
    if json_:
        print_json({"id": run["id"], "logs": stored})
        return
    print_log_lines(stored, timestamps=timestamps, raw=raw)


def print_log_lines(stored, timestamps=False, raw=False):
    """Print stored log lines as text (pieces of a long line joined), with times, or raw."""
    continued = False  # the previous piece was a P piece: this one goes on the same line
    for line in stored:
        if raw:
            print(line)
            continue
        parsed = parse_line(line)
        if timestamps and parsed.time and not continued:
            print(parsed.time, end=" ")
        print(parsed.text, end="" if parsed.partial else "\n")
        continued = parsed.partial
    if continued:
        print()


def cmd_runs_prune(args):
    before = None
    if args.older_than is not None:
        if args.older_than < 0:
            raise ConfigError(f"--older-than must be 0 or more days, not {args.older_than:g}")
        from datetime import datetime, timedelta, timezone
        # The store's own time form (UTC ISO, milliseconds), so that the text comparison holds.
        before = (datetime.now(timezone.utc) - timedelta(days=args.older_than)).isoformat(timespec="milliseconds")
    pruned = open_store(args).prune_runs(keep=args.keep, before=before, dry_run=args.dry_run)
    if args.json:
        print_json({"pruned" if not args.dry_run else "would_prune": [r["id"] for r in pruned]})
    else:
        verb = "would prune" if args.dry_run else "pruned"
        print(f"{verb} {len(pruned)} run{'' if len(pruned) == 1 else 's'} (records, logs and run folders)")


def add_run_choice(parser):
    parser.add_argument("run_id", nargs="?", help="a run id or its first characters")
    parser.add_argument("--last", action="store_true", help="the newest run instead of RUN_ID")


def add_run_arguments(parser):
    parser.add_argument("--args", help="task args as a JSON object, e.g. '{\"batch_size\": 5000}'")
    parser.add_argument("--arg", action="append", metavar="KEY=VALUE",
                        help="one task arg (VALUE parsed as JSON when it is); repeatable")
    parser.add_argument("--timeout", type=float, help="seconds before the run is killed (recorded timed_out)")
    parser.add_argument("--name", help="a name for the task (default: the zip or folder name)")
    parser.add_argument("--no-env", action="store_true",
                        help="run main.py in orchzip's own Python instead of an environment built "
                        "(and cached) from the zip's requirements.txt")
    add_wallaroo_version_flag(parser, "the task targets: its environment gets that SDK's pinned "
                              "packages and its results that release's shape")
    parser.add_argument("--log-max-bytes", metavar="SIZE", type=_log_size,
                        help="the most each run's log keeps, e.g. 16MiB or 512k: past it the log keeps "
                        "its first quarter and its most recent lines and says how much it left out "
                        "(default: $ORCHZIP_LOG_MAX_BYTES or 16MiB)")


def _log_size(value):
    import argparse
    from orchzip.runtime.task_logs import resolve_max_bytes
    try:
        return resolve_max_bytes(value)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).replace("--log-max-bytes must", "must")) from None


def register(subparsers):
    p = subparsers.add_parser(
        "run", help="run an orchestration zip or folder locally: once, or --continuously",
        description="Run an orchestration once on this machine: a folder is built into a zip "
        "first; the zip is unpacked into a fresh run directory and main.py runs in a child "
        "process with the task args and the local connections and pipelines. The task's "
        "output is shown and kept in the run's log. Exits 1 when the task fails. Ctrl-C, SIGTERM "
        "and SIGHUP stop the task's whole process tree and record the run killed. The run's "
        "status follows its sinks' commits; a task arg run_id (--arg run_id=NAME) names its "
        "output, so running the same run_id again writes nothing twice. "
        "With --continuously, main.py is kept running until the task is killed (see below).",
    )
    p.add_argument("target", help="an orchestration zip or folder, or the name of a task (or orchestration) "
                   "in the project's orchzip.yaml, applied with `orchzip apply`: its args and timeout apply, "
                   "--arg and --timeout override them")
    add_run_arguments(p)
    from orchzip.commands import continuous
    continuous.add_arguments(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_run)

    runs = subparsers.add_parser("runs", help="history and logs of local runs")
    sub = runs.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="list runs, newest first")
    p.add_argument("--task", help="only runs of this task id")
    p.add_argument("--status", help="only runs with this status (running, success, failure, killed, timed_out)")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    add_json_flag(p)
    p.set_defaults(func=cmd_runs_list)
    p = sub.add_parser("show", help="one run's record")
    add_run_choice(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_runs_show)
    p = sub.add_parser(
        "logs", help="what a run printed",
        description="What a run printed, also while it runs. Each line is stored in Wallaroo's "
        "form, '<RFC3339 UTC time> <stdout|stderr> <F|P> <text>', between Wallaroo's framing "
        "lines; shown as text unless --timestamps or --raw. --json gives the stored lines as "
        "the API's get_logs_for_run does.",
    )
    add_run_choice(p)
    p.add_argument("--lines", type=int, help="only the last N lines")
    p.add_argument("--timestamps", "-t", action="store_true", help="each line with the time it was printed (UTC)")
    p.add_argument("--raw", action="store_true", help="the stored lines as they are: time, stream, F|P flag, text")
    add_json_flag(p)
    p.set_defaults(func=cmd_runs_logs)
    p = sub.add_parser(
        "prune", help="forget old runs: their records, logs and run folders",
        description="Delete ended runs and their folders: all but the newest --keep runs of each "
        "task name (each `orchzip run` makes a task of its own; runs of one name group together), "
        "and/or runs older than --older-than days. Running runs are never pruned.",
    )
    p.add_argument("--keep", type=int, metavar="N", help="keep the newest N runs of each task name")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="prune runs created more than DAYS ago")
    p.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    add_json_flag(p)
    p.set_defaults(func=cmd_runs_prune)
