"""The ``orchzip`` command: parse arguments, call one library function, map errors to exits.

Each command family lives in a module of ``orchzip.commands`` with a ``register(subparsers)``
function; the handler it sets (``func``) gets the parsed args and returns an exit code.
Library code never prints or exits: only this module and ``orchzip.commands`` do.
"""

import argparse
import importlib
import os
import sys

from orchzip import __version__
from orchzip.errors import OrchzipError

# Command modules, in the order `orchzip --help` lists them.
COMMAND_MODULES = [
    "quickstart",
    "project",
    "build",
    "run",
    "state",
    "models",
    "workspaces",
    "schedule",
    "remote",
    "serve",
    "ui",
    "completion",
    "doctor",
]

EXIT_OK = 0
EXIT_FAILED = 1  # the task or operation ran and failed
EXIT_USAGE = 2  # the user's input was refused


def default_state_dir():
    """$ORCHZIP_STATE_DIR, else the state of the project the current folder is in (the
    nearest orchzip.yaml or .orchzip at or above it, as git finds its repository), else ./.orchzip."""
    from orchzip.runtime.project import state_dir_for
    return os.environ.get("ORCHZIP_STATE_DIR") or state_dir_for(os.getcwd())


def build_parser():
    parser = argparse.ArgumentParser(
        prog="orchzip",
        description="Build, run locally, schedule and ship Wallaroo ML Workload Orchestrations.",
    )
    parser.add_argument("--version", action="version", version=f"orchzip {__version__}")
    parser.add_argument(
        "--state-dir",
        default=None,
        help="where orchzip keeps connections, pipelines, tasks and runs (default: $ORCHZIP_STATE_DIR, "
        "else .orchzip beside the nearest orchzip.yaml or .orchzip at or above the current folder, else ./.orchzip)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"orchzip.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"orchzip.commands.{name}":
                raise
            continue  # a command family not built yet
        module.register(subparsers)
    parser.add_argument("--json", dest="json_anywhere", action="store_true",
                        help="print machine-readable JSON (as the command's own --json)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more progress: an environment build shows the installer's output")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="no progress, only results and errors")
    _accept_state_dir_anywhere(parser)
    return parser


def _accept_state_dir_anywhere(parser):
    """``orchzip runs list --state-dir X -v`` as well as ``orchzip --state-dir X -v runs list``, as
    git and uv take their global options; the value given last wins."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                taken = {o for a in sub._actions for o in a.option_strings}
                # SUPPRESS: when not given here, the value given before the command stands.
                if "--state-dir" not in taken:
                    sub.add_argument("--state-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                for short, long_ in (("-v", "--verbose"), ("-q", "--quiet")):
                    if short not in taken and long_ not in taken:
                        sub.add_argument(short, long_, action="count", default=argparse.SUPPRESS,
                                         help=argparse.SUPPRESS)
                _accept_state_dir_anywhere(sub)


def _state_note(err, state_dir):
    """Where a name was looked up and not found: states are found per folder, so say which."""
    from orchzip.errors import UnknownConnection, UnknownPipeline
    from orchzip.runtime.store import DB_NAME, NotFound
    if not isinstance(err, (NotFound, UnknownConnection, UnknownPipeline)):
        return ""
    state_dir = os.path.abspath(state_dir)
    if not os.path.isfile(os.path.join(state_dir, DB_NAME)):
        return f" (looked in the state at {state_dir}, which does not exist yet)"
    return f" (looked in the state at {state_dir})"


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    # apply -f FILE uses the state beside FILE unless a state was named
    args.state_dir_given = args.state_dir is not None or bool(os.environ.get("ORCHZIP_STATE_DIR"))
    if args.json_anywhere:
        if not hasattr(args, "json"):
            parser.error(f"orchzip {args.command} has no --json output")
        args.json = True
    if args.state_dir is None:
        args.state_dir = default_state_dir()
    from orchzip.commands._output import end_line, set_verbosity
    set_verbosity(args.verbose - args.quiet)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args) or EXIT_OK
    except OrchzipError as err:
        end_line()
        print(f"orchzip: error: {err}{_state_note(err, args.state_dir)}", file=sys.stderr)
        return getattr(err, "exit_code", EXIT_USAGE)
    except ModuleNotFoundError as err:
        from orchzip.extras import missing_extra_message
        message = missing_extra_message(err, args.command)
        if message is None:
            raise
        end_line()
        print(f"orchzip: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        end_line()
        print("orchzip: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
