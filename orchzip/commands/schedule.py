"""`orchzip schedule`, `orchzip scheduler` and `orchzip tasks ...`: scheduled tasks, locally."""

import argparse
import logging
import sys
import threading

from orchzip.errors import ConfigError
from orchzip.commands._output import add_json_flag, print_json, print_table
from orchzip.commands._running import open_store
from orchzip.commands.run import _fmt_seconds, add_run_arguments, parse_task_args, print_log

EXIT_FAILED = 1

SCHEDULE_HELP = """\
Register an orchestration zip or folder as a scheduled task, as Wallaroo's run_scheduled
does; `orchzip scheduler` runs it. A folder is built into a zip now.

Cron: 5 fields, minute hour day-of-month month day-of-week ("*/5 * * * *", "0 3 * * mon-fri"),
as Wallaroo takes them. A 6th field, for tests, is SECONDS and comes FIRST: "*/2 * * * * *"
fires every 2 seconds.

Time zone (--tz, default UTC as on Wallaroo) and daylight saving:
  - a time that does not exist when clocks go forward (02:30 on the spring-forward day in
    America/New_York) fires once, at the first instant after the gap (03:00); several such
    times collapse into that one fire;
  - a time that occurs twice when clocks go back fires once, at its first occurrence;
    schedules whose hour field is * (every hour) fire through both passes, so "*/15 * * * *"
    stays every 15 real minutes.

Policies:
  --overlap forbid (default): a fire while the previous run still runs is skipped and
    recorded as skipped; allow: runs side by side; replace: the running one is killed.
  --misfire-grace S (default 3600): fires missed while no scheduler ran give at most ONE
    run, for the latest missed fire, if it is at most S seconds old; the rest are recorded
    as skipped. Never a burst. 0: no catch-up at all.
  --retries N (default 0) --retry-backoff S (default 30): a run that failed or timed out
    is tried again after S, 2S, 4S... seconds (at most an hour); a retry due after the next
    fire is dropped.
  --timeout S: a run still going after S seconds is killed, process tree and all, and
    recorded timed_out.

Skipped fires are not runs (Wallaroo has no "skipped" run status): see them with
`orchzip tasks status ID`.
"""


def _show_progress(line):
    from orchzip.commands._output import env_progress
    env_progress(line)


def _iso_list(fires, tz):
    """Fire times as people read them: in the task's zone, with the offset."""
    from orchzip.runtime.scheduler.trigger import resolve_zone
    zone = resolve_zone(tz or "UTC")
    return ", ".join(f.astimezone(zone).isoformat() for f in fires)


# -- schedule / scheduler -------------------------------------------------------------------
def cmd_schedule(args):
    from orchzip.runtime.scheduler.control import (
        next_fire_times, schedule_task, validate_schedule,
    )
    from orchzip.runtime.scheduler.loop import scheduler_alive
    task_args = parse_task_args(args.args, args.arg)
    validate_schedule(args.cron, args.tz, args.timeout, args.overlap, args.misfire_grace, args.retries,
                      args.retry_backoff)  # refuse bad input before building anything
    store = open_store(args)
    task = schedule_task(
        store, args.target, args.cron, name=args.name, args=task_args, timeout=args.timeout, tz=args.tz,
        overlap=args.overlap, misfire_grace=args.misfire_grace, retries=args.retries, retry_backoff=args.retry_backoff,
        no_env=args.no_env, on_env_progress=_show_progress, log_max_bytes=args.log_max_bytes,
        wallaroo_version=args.wallaroo_version,
    )
    fires = next_fire_times(task, 3)
    if args.json:
        print_json(dict(task, next_fire_times=[f.isoformat() for f in fires]))
        return
    print(f"scheduled task {task['id']} ({task['name']}): {task['schedule']!r} in {task['tz']}")
    print(f"next fires: {_iso_list(fires, task['tz'])}")
    if scheduler_alive(store) is None:
        print("no scheduler is running; start one with: orchzip scheduler", file=sys.stderr)


def cmd_scheduler(args):
    from orchzip.runtime.scheduler.loop import Scheduler
    from orchzip.runtime.task_logs import resolve_max_bytes
    resolve_max_bytes()  # a bad $ORCHZIP_LOG_MAX_BYTES is refused now, not at every fire
    if args.grace < 0:
        raise ConfigError(f"--grace must be 0 or more seconds, not {args.grace:g}")
    if args.stop_after is not None and args.stop_after <= 0:
        raise ConfigError(f"--for must be more than 0 seconds, not {args.stop_after:g}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("orchzip.scheduler")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    scheduler = Scheduler(open_store(args), grace=args.grace)
    scheduler.install_signal_handlers()
    if args.stop_after is not None:
        # As if Ctrl-C came after that long: CI jobs and scripts fire what is due, then go on.
        timer = threading.Timer(args.stop_after, scheduler.stop)
        timer.daemon = True
        timer.start()
    scheduler.run()


# -- tasks ----------------------------------------------------------------------------------
def cmd_tasks_list(args):
    from orchzip.runtime.scheduler.loop import scheduler_alive
    store = open_store(args, create=False)
    tasks = store.list_tasks(kind=args.kind)
    if args.status:
        tasks = [t for t in tasks if t["status"] == args.status]
    for task in tasks:
        last = store.list_runs(task_id=task["id"], limit=1)
        task["last_run"] = last[0]["status"] if last else ""
        task["next_fire"] = "paused" if task.get("paused") else (task.get("next_fire_at") or "")
    if args.json:
        print_json(tasks)
        return
    print_table([{k: ("" if v is None else v) for k, v in t.items()} for t in tasks],
                ["id", "name", "kind", "status", "schedule", "tz", "next_fire", "last_run"])
    if any(t["kind"] == "scheduled" and t["status"] in ("pending", "started") for t in tasks) \
            and scheduler_alive(store) is None:
        print("no scheduler is running; scheduled tasks fire only while `orchzip scheduler` runs", file=sys.stderr)


def cmd_tasks_status(args):
    from orchzip.runtime.scheduler.clock import from_iso
    from orchzip.runtime.scheduler.control import task_status
    status = task_status(open_store(args, create=False), args.task_id)
    if args.json:
        print_json(status)
        return
    keys = ["id", "name", "kind", "status", "source", "source_sha", "args", "timeout", "created_at", "updated_at"]
    if status["kind"] == "scheduled":
        keys += ["schedule", "tz", "overlap", "misfire_grace", "retries", "retry_backoff", "paused", "retry_at"]
    for key in keys:
        value = status.get(key)
        print(f"{key:14} {'' if value is None else value}")
    last = status["last_runs"][0]["status"] if status["last_runs"] else "(no run yet)"
    print(f"{'last_run':14} {last}")
    if status["kind"] == "scheduled":
        fires = [from_iso(f) for f in status["next_fire_times"]]
        print(f"{'next_fires':14} {_iso_list(fires, status['tz']) or '-'}")
        lease = status["scheduler"]
        print(f"{'scheduler':14} {'pid %s since %s' % (lease['pid'], lease['started_at']) if lease else 'not running'}")
    print("last runs:")
    print_table(status["last_runs"], ["run_id", "status", "fire_time", "attempt", "created_at", "error"])
    if status.get("skipped_fires"):
        print("skipped fires:")
        print_table(status["skipped_fires"], ["fire_time", "last_fire_time", "count", "reason"])


def cmd_tasks_runs(args):
    store = open_store(args, create=False)
    task = store.get_task(args.task_id)
    rows = store.list_runs(task_id=task["id"], status=args.status, limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        print_table([dict(r, seconds=_fmt_seconds(r)) for r in rows],
                    ["id", "status", "fire_time", "attempt", "created_at", "seconds", "error"])


def cmd_tasks_logs(args):
    store = open_store(args, create=False)
    task = store.get_task(args.task_id)
    if args.run:
        run = store.get_run(args.run)
        if run["task_id"] != task["id"]:
            raise ConfigError(f"run {run['id']} belongs to task {run['task_id']}, not to task {task['id']}")
    else:
        runs = store.list_runs(task_id=task["id"], limit=1)
        if not runs:
            raise ConfigError(f"task {task['id']} has no runs yet")
        run = runs[0]
    print_log(run, lines=args.lines, json_=args.json, timestamps=args.timestamps, raw=args.raw)


def cmd_tasks_kill(args):
    from orchzip.runtime.scheduler.control import request_kill, wait_until_ended
    store = open_store(args)
    task = request_kill(store, args.task_id)
    if task["status"] == "pending_kill" and args.wait > 0:
        task = wait_until_ended(store, task["id"], args.wait)
    if args.json:
        print_json(task)
    elif task["status"] == "pending_kill":
        print(f"task {task['id']} is pending_kill: kill requested, but no process owning its run "
              f"acted within {args.wait:g} s", file=sys.stderr)
    else:
        print(f"task {task['id']} {task['status']}")
    return EXIT_FAILED if task["status"] == "pending_kill" and args.wait > 0 else 0


def _cmd_pause_resume(action):
    def cmd(args):
        from orchzip.runtime.scheduler import control
        task = getattr(control, f"{action}_task")(open_store(args), args.task_id)
        if args.json:
            print_json(task)
        elif action == "pause":
            print(f"task {task['id']} paused")
        else:
            print(f"task {task['id']} resumed; next fire {task['next_fire_at']}")
    return cmd


# -- parsers --------------------------------------------------------------------------------
def register(subparsers):
    from orchzip.runtime.scheduler.policies import DEFAULT_GRACE, OVERLAP_POLICIES

    p = subparsers.add_parser(
        "schedule", help="register an orchestration as a scheduled task (cron)",
        description=SCHEDULE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", help="an orchestration zip or folder")
    p.add_argument("--cron", required=True, help='the schedule, e.g. "*/5 * * * *" (quote it)')
    p.add_argument("--tz", default="UTC", help="IANA time zone the cron string is read in (default UTC)")
    add_run_arguments(p)
    p.add_argument("--overlap", default="forbid", choices=OVERLAP_POLICIES,
                   help="when a fire comes while the previous run still runs (default forbid)")
    p.add_argument("--misfire-grace", type=float, metavar="S",
                   help="how late a missed fire may still run, in seconds (default 3600)")
    p.add_argument("--retries", type=int, default=0, help="times a failed or timed-out run is tried again (default 0)")
    p.add_argument("--retry-backoff", type=float, metavar="S", help="seconds before the first retry (default 30)")
    add_json_flag(p)
    p.set_defaults(func=cmd_schedule)

    p = subparsers.add_parser(
        "scheduler", help="run scheduled tasks in the foreground until stopped",
        description="Fire the state directory's scheduled tasks until stopped (Ctrl-C or SIGTERM): "
        "then no new run starts, running ones get --grace seconds to finish and are then killed "
        "(recorded killed); a second Ctrl-C kills them at once. One scheduler per state directory. "
        "A scheduler killed outright is safe to start again: runs it lost are recorded failed, "
        "and no fire is run twice.",
    )
    p.add_argument("--grace", type=float, default=DEFAULT_GRACE,
                   help=f"seconds running runs get to finish when stopped (default {DEFAULT_GRACE:g})")
    p.add_argument("--for", dest="stop_after", type=float, metavar="SECONDS",
                   help="stop by itself after SECONDS, as Ctrl-C would (for scripts and CI)")
    p.set_defaults(func=cmd_scheduler)
    _register_tasks(subparsers)


def _register_tasks(subparsers):
    tasks = subparsers.add_parser(
        "tasks", help="list, inspect and control tasks (run-once, scheduled and continuous)",
        description="Tasks and their runs, with Wallaroo's statuses. Task: pending, started, "
        "pending_kill, killed, failed, crash_loop (a continuous task whose main.py keeps exiting). "
        "Run: running, success, failure, killed, timed_out. "
        "As on Wallaroo, a task that has started stays `started` when its run ends, whatever the "
        "outcome: the outcome is its run's status (the last_run column). A kill ends a task (killed).",
    )
    sub = tasks.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="list tasks: status, next fire time, and their last run's outcome")
    p.add_argument("--kind", choices=("run_once", "scheduled", "continuous"), help="only tasks of this kind")
    p.add_argument("--status", help="only tasks with this status")
    add_json_flag(p)
    p.set_defaults(func=cmd_tasks_list)
    for action, func, text in (
        ("status", cmd_tasks_status, "one task: status, schedule, next fires, last runs, skipped fires"),
        ("show", cmd_tasks_status, "the same as status: one task, with the sha256 of the zip it runs"),
        ("pause", _cmd_pause_resume("pause"), "stop firing a scheduled task (a running run goes on)"),
        ("resume", _cmd_pause_resume("resume"), "fire a paused task again from its next fire (no catch-up)"),
    ):
        p = sub.add_parser(action, help=text)
        p.add_argument("task_id", help="a task id or its first characters")
        add_json_flag(p)
        p.set_defaults(func=func)
    p = sub.add_parser("runs", help="a task's runs, newest first")
    p.add_argument("task_id", help="a task id or its first characters")
    p.add_argument("--status", help="only runs with this status")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    add_json_flag(p)
    p.set_defaults(func=cmd_tasks_runs)
    p = sub.add_parser("logs", help="what a task's latest run (or --run) printed")
    p.add_argument("task_id", help="a task id or its first characters")
    p.add_argument("--run", metavar="RUN_ID", help="this run instead of the latest")
    p.add_argument("--lines", type=int, help="only the last N lines")
    p.add_argument("--timestamps", "-t", action="store_true", help="each line with the time it was printed (UTC)")
    p.add_argument("--raw", action="store_true", help="the stored lines as they are: time, stream, F|P flag, text")
    add_json_flag(p)
    p.set_defaults(func=cmd_tasks_logs)
    p = sub.add_parser("kill", help="kill a task: its running run is stopped and a scheduled task fires no more")
    p.add_argument("task_id", help="a task id or its first characters")
    p.add_argument("--wait", type=float, default=15.0,
                   help="seconds to wait for the kill to be carried out (default 15; 0: return at once)")
    add_json_flag(p)
    p.set_defaults(func=cmd_tasks_kill)
