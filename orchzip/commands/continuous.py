"""`orchzip run --continuously`: keep main.py running until the task is killed (Wallaroo's
run_continuously, run type NetworkService)."""

import sys

from orchzip.errors import ConfigError
from orchzip.commands._output import print_json

HELP = """\
--continuously runs the orchestration as Wallaroo's run_continuously does (a task of run type
NetworkService): main.py is a service, kept running until the task is killed (orchzip tasks
kill ID, or Ctrl-C here). Each start of main.py is a run with its own log. When main.py
exits, failed or not, it is started again after --backoff seconds, doubled for each run in a
row that ended within --stable-after seconds (at most --max-backoff). After --crash-loop-after
such quick exits the task's status is crash_loop; it keeps restarting, and is started again
once a run stays up for --stable-after seconds.
"""


DEFAULTS = {"backoff": 1.0, "max_backoff": 60.0, "stable_after": 60.0, "crash_loop_after": 3}


def add_arguments(parser):
    group = parser.add_argument_group("run continuously", HELP)
    group.add_argument("--continuously", action="store_true",
                       help="keep main.py running, restarting it when it exits, until the task is killed")
    group.add_argument("--backoff", type=float, default=1.0, metavar="S",
                       help="seconds before a restart; doubles with each quick exit in a row (default 1)")
    group.add_argument("--max-backoff", type=float, default=60.0, metavar="S",
                       help="the longest wait before a restart (default 60)")
    group.add_argument("--stable-after", type=float, default=60.0, metavar="S",
                       help="a run up this long is healthy: the backoff and crash_loop start over (default 60)")
    group.add_argument("--crash-loop-after", type=int, default=3, metavar="N",
                       help="quick exits in a row that make the task crash_loop (default 3)")


def _policy(args):
    from orchzip.runtime.continuous import RestartPolicy
    return RestartPolicy(backoff=args.backoff, max_backoff=args.max_backoff, stable_seconds=args.stable_after,
                         crash_loop_after=args.crash_loop_after)


def refuse_options_of_continuous(args):
    """Restart options without --continuously are a mistake worth one line."""
    given = [name for name, default in DEFAULTS.items() if getattr(args, name) != default]
    if given:
        raise ConfigError(f"--{given[0].replace('_', '-')} applies to --continuously only; "
                          f"add --continuously or leave it out")


def cmd_run_continuously(args, target, task_args):
    from orchzip.commands._running import Progress, describe_run, environment_options, open_store, stop_signals_interrupt
    from orchzip.runtime.continuous import run_continuously
    from orchzip.runtime.scheduler.control import kill_requested

    if args.timeout is not None:
        raise ConfigError("--timeout does not apply to --continuously: a run-continuously task runs until "
                          "killed (orchzip tasks kill ID, or Ctrl-C)")
    policy = _policy(args)
    store = open_store(args)
    progress = Progress(enabled=False)
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr, flush=True))

    def on_run(run):
        say(f"run {run['id']} started (attempt {run['attempt']}) of task {run['task_id']}")

    def on_restart(run, delay, status):
        say(f"{describe_run(run)}; starting it again in {delay:g} s (task {status})")

    try:
        with stop_signals_interrupt() as stop:  # SIGTERM and SIGHUP stop it as Ctrl-C does
            task = run_continuously(
                store, target, args=task_args, name=args.name, policy=policy,
                should_stop=stop.polled(lambda task: kill_requested(store, task["id"])),
                on_run=on_run, on_restart=on_restart, on_output=None if args.json else progress.on_output,
                log_max_bytes=args.log_max_bytes, **environment_options(args),
            )
    finally:
        progress.close()
    if stop.reason:  # the task was stopped and recorded; the command ends as an interrupted one
        raise KeyboardInterrupt(stop.reason)
    runs = store.list_runs(task_id=task["id"])
    if args.json:
        print_json(dict(task, runs=len(runs)))
    else:
        say(f"task {task['id']} {task['status']} after {len(runs)} run(s)")
    return 0


__all__ = ["add_arguments", "cmd_run_continuously", "refuse_options_of_continuous", "DEFAULTS"]
