"""`orchzip run` (a run-once task, locally) and `orchzip runs list|show|logs`."""

import json
import sys

from orchzip.errors import ConfigError
from orchzip.commands._output import add_json_flag, add_wallaroo_version_flag, print_json, print_table
from orchzip.commands.state import parse_json_object

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


class Progress:
    """Rows and batches on stderr while a run goes, when stderr is a terminal."""

    def __init__(self, enabled):
        self._bar = None
        self._enabled = enabled

    def on_event(self, event):
        if not self._enabled or "rows_read" not in event:
            return
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(unit=" rows", unit_scale=True, file=sys.stderr, leave=False, desc="inferring")
        self._bar.update(event["rows_read"] - self._bar.n)
        self._bar.set_postfix(batches=event.get("batches"), written=event.get("rows_written"), refresh=False)

    def on_output(self, text):
        if self._bar is not None:
            self._bar.clear()
        sys.stdout.write(text)
        sys.stdout.flush()
        if self._bar is not None:
            self._bar.refresh()

    def close(self):
        if self._bar is not None:
            self._bar.close()


def describe_run(run):
    seconds = _seconds(run)
    text = f"run {run['id']} {run['status']}"
    if seconds is not None:
        text += f" in {seconds:.2f} s"
    if run.get("rows_read") is not None:
        text += (f"; rows read {run['rows_read']}, inferred {run['rows_inferred']}, "
                 f"written {run['rows_written']}")
    return text


def _seconds(run):
    from datetime import datetime
    if not run.get("started_at") or not run.get("ended_at"):
        return None
    return (datetime.fromisoformat(run["ended_at"]) - datetime.fromisoformat(run["started_at"])).total_seconds()


def execute(args, target, task_args):
    """Run ``target`` once with the CLI's progress display; returns the final run record."""
    from orchzip.runtime.runner import run_once
    from orchzip.runtime.scheduler.control import kill_requested
    from orchzip.runtime.store import Store

    store = Store(args.state_dir)
    progress = Progress(enabled=not args.json and sys.stderr.isatty())
    try:
        return run_once(
            store, target, args=task_args, timeout=args.timeout, name=args.name,
            on_event=progress.on_event, on_output=None if args.json else progress.on_output,
            should_stop=lambda task: kill_requested(store, task["id"]),  # honours `orchzip tasks kill`
            wallaroo_version=getattr(args, "wallaroo_version", None), **_environment_options(args),
        )
    finally:
        progress.close()


def _environment_options(args):
    """Per-task environments: built from the zip's requirements.txt unless --no-env."""
    if getattr(args, "no_env", False):
        return {"no_env": True}
    return {"on_env_progress": _show_env_progress}


def _show_env_progress(line):
    print(line, file=sys.stderr, flush=True)


def cmd_run(args):
    run = execute(args, args.target, parse_task_args(args.args, args.arg))
    if args.json:
        print_json(run)
    else:
        print(describe_run(run), file=sys.stderr)
        if run["status"] != "success":
            print(f"orchzip: error: {run['error'] or run['status']} (log: {run['log_path']})", file=sys.stderr)
    return 0 if run["status"] == "success" else EXIT_TASK_FAILED


def open_store(args):
    """The store, with runs whose `orchzip run` died unrecorded marked failed first."""
    from orchzip.runtime.runner import reconcile_lost_runs
    from orchzip.runtime.store import Store

    store = Store(args.state_dir)
    reconcile_lost_runs(store)
    return store


def cmd_runs_list(args):
    rows = open_store(args).list_runs(task_id=args.task, status=args.status, limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        print_table([dict(r, seconds=_fmt_seconds(r)) for r in rows],
                    ["id", "task_id", "status", "created_at", "seconds", "rows_written"])


def _fmt_seconds(run):
    seconds = _seconds(run)
    return "" if seconds is None else f"{seconds:.2f}"


def _chosen_run(args):
    """The run named by RUN_ID, or with --last the newest run."""
    store = open_store(args)
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
        print_json(run)
    else:
        for key, value in run.items():
            print(f"{key:14} {'' if value is None else value}")


def cmd_runs_logs(args):
    run = _chosen_run(args)
    if not run["log_path"]:
        raise ConfigError(f"run {run['id']} has no log: it failed before its task started ({run['error']})")
    with open(run["log_path"], encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    if args.lines:
        lines = lines[-args.lines:]
    if args.json:
        print_json({"id": run["id"], "logs": lines})
    else:
        for line in lines:
            print(line)


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


def register(subparsers):
    p = subparsers.add_parser(
        "run", help="run an orchestration zip or folder once, locally (a run-once task)",
        description="Run an orchestration once on this machine: a folder is built into a zip "
        "first; the zip is unpacked into a fresh run directory and main.py runs in a child "
        "process with the task args and the local connections and pipelines. The task's "
        "output is shown and kept in the run's log. Exits 1 when the task fails.",
    )
    p.add_argument("target", help="an orchestration zip or folder")
    add_run_arguments(p)
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
    p = sub.add_parser("logs", help="what a run printed")
    add_run_choice(p)
    p.add_argument("--lines", type=int, help="only the last N lines")
    add_json_flag(p)
    p.set_defaults(func=cmd_runs_logs)
