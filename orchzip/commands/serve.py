"""`orchzip serve`: the local Wallaroo-compatible API (MLOps endpoints and pipeline inference)."""

import ipaddress
import logging
import os
import sys

from orchzip.commands._output import add_wallaroo_version_flag
from orchzip.errors import ConfigError
from orchzip.runtime.wallaroo_versions import VERSION_ENV

LOOPBACK_NAMES = ("localhost",)


def _is_loopback(host):
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args):
    from orchzip.runtime.server import load_or_create_token, serve, token_path

    if args.show_token:
        print(load_or_create_token(args.state_dir))
        return 0
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, not {args.port}")
    if args.max_upload_bytes is not None and args.max_upload_bytes <= 0:
        raise ConfigError(f"--max-upload-bytes must be positive, not {args.max_upload_bytes}")
    load_or_create_token(args.state_dir)
    if args.wallaroo_version:
        # The server's tasks, packaging and scheduler all default to the process's version.
        os.environ[VERSION_ENV] = args.wallaroo_version
    if not _is_loopback(args.host):
        print(f"orchzip: warning: serving on {args.host}, reachable from other machines; anyone with the "
              f"token can run code here", file=sys.stderr)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"orchzip serve: http://{args.host}:{args.port} on {args.state_dir}; bearer token in "
          f"{token_path(args.state_dir)} (print it: orchzip serve --show-token)", file=sys.stderr, flush=True)
    serve(args.state_dir, host=args.host, port=args.port, no_env=args.no_env,
          max_upload_bytes=args.max_upload_bytes, scheduler=not args.no_scheduler)
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "serve", help="serve a local Wallaroo-compatible API (connections, orchestrations, tasks, inference)",
        description="Serve Wallaroo's MLOps REST API (/v1/api/connections, workspaces, orchestration, task), "
        "the GraphQL reads the wallaroo SDK makes (/v1/graphql) and the pipeline inference URL "
        "(/v1/api/pipelines/infer/...) on this machine, backed by the state directory, the local runner "
        "and the scheduler. Every request but GET /v1/api/config needs 'Authorization: Bearer TOKEN'; the "
        "token is made at first start and kept owner-only in the state directory. Scripts and "
        "`orchzip upload`/`orchzip remote` work against it with WALLAROO_URL=http://HOST:PORT and "
        "WALLAROO_TOKEN=$(orchzip serve --show-token); the wallaroo SDK with "
        "wallaroo.Client(api_endpoint=URL, auth_type=\"token\") and WALLAROO_SDK_CREDENTIALS naming a JSON "
        "file {\"token\": TOKEN, \"user_email\": ..., \"user_id\": ...}.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    p.add_argument("--show-token", action="store_true", help="print the bearer token (made if missing) and exit")
    p.add_argument("--no-env", action="store_true",
                   help="run tasks in orchzip's own Python instead of an environment built from each zip's "
                   "requirements.txt")
    p.add_argument("--no-scheduler", action="store_true",
                   help="do not fire scheduled tasks from this process (run `orchzip scheduler` instead)")
    p.add_argument("--max-upload-bytes", type=int, help="refuse larger orchestration zips (default: 100 MiB)")
    add_wallaroo_version_flag(p, "tasks target (their environments' SDK pins, their results' shape)")
    p.set_defaults(func=cmd_serve)
