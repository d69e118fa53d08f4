"""`orchzip ui`: the dashboard alone, without the MLOps API (``orchzip serve`` serves both)."""

import logging
import sys

from orchzip.commands.serve import _is_loopback
from orchzip.errors import ConfigError


def cmd_ui(args):
    from orchzip.runtime.dashboard import serve_ui
    from orchzip.runtime.server import load_or_create_token

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, not {args.port}")
    token = load_or_create_token(args.state_dir)
    if not _is_loopback(args.host):
        print(f"orchzip: warning: serving on {args.host}, reachable from other machines; anyone with the "
              f"token can run tasks here", file=sys.stderr)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"orchzip ui: http://{args.host}:{args.port}/ on {args.state_dir}; sign in with the token "
          f"(print it: orchzip serve --show-token)", file=sys.stderr, flush=True)
    serve_ui(args.state_dir, token, host=args.host, port=args.port, no_env=args.no_env)
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "ui", help="serve the dashboard alone (tasks, runs, logs, connections, pipelines) in a browser",
        description="Serve the dashboard that `orchzip serve` also serves at /, without the MLOps API and "
        "without a scheduler (run `orchzip scheduler` beside it for scheduled tasks to fire). Sign in "
        "with the serve token (print it: orchzip serve --show-token). Runs started from the page are "
        "watched by this process and killed when it stops.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8090, help="port to listen on (default: 8090)")
    p.add_argument("--no-env", action="store_true",
                   help="run tasks started from the page in orchzip's own Python instead of an environment "
                   "built from each zip's requirements.txt")
    p.set_defaults(func=cmd_ui)
