"""`orchzip doctor`: what local runs depend on, one line per check with its fix."""

import os

from orchzip.commands._output import add_json_flag, add_wallaroo_version_flag, print_json

EXIT_PROBLEMS = 1
MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def cmd_doctor(args):
    from orchzip.runtime.doctor import run_checks
    from orchzip.runtime.store import DB_NAME, Store

    # Read-only: a state directory that does not exist has no connections to check.
    store = Store(args.state_dir) if os.path.isfile(os.path.join(args.state_dir, DB_NAME)) else None
    checks = run_checks(store, wallaroo_version=args.wallaroo_version)
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        print_json({"ok": not failed, "checks": [c.as_dict() for c in checks]})
    else:
        for check in checks:
            line = f"{MARKS[check.status]}  {check.name}: {check.detail}"
            print(line + (f"; fix: {check.fix}" if check.fix else ""))
        if store is None:
            print(f"      (no state in {args.state_dir}: no connections to check)")
    return EXIT_PROBLEMS if failed else 0


def register(subparsers):
    p = subparsers.add_parser(
        "doctor", help="check Python 3.10, uv, the package index, the environment cache, the SDK pins and connections",
        description="Check what local runs depend on, one line each with its fix: a Python 3.10 for task "
        "environments, uv, the package index uv resolves from, the size of the environment cache, the "
        "target Wallaroo version and its SDK's pins, and whether each connection of the state can be "
        "reached (a TCP connection or a path; nothing is read or written). Exits 1 when a check fails.",
    )
    add_wallaroo_version_flag(p, "whose SDK pins are shown")
    add_json_flag(p)
    p.set_defaults(func=cmd_doctor)
