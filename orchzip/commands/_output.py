"""Shared helpers for commands: JSON for scripts, aligned tables for people, shared flags."""

import json
import sys


def add_json_flag(parser):
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def print_json(value):
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def print_table(rows, columns):
    """Print ``rows`` (dicts) as an aligned table with the given column keys."""
    if not rows:
        print("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _cell(value):
    """A table cell: nothing where there is no value (never the text 'None')."""
    return "" if value is None else str(value)


def print_deleted(args, kind, name, note=""):
    """What a delete command says: one line for people, ``{"deleted": ...}`` with --json."""
    if args.json:
        print_json({"deleted": kind, "name": name})
    else:
        print(f"deleted {kind} {name}" + (f" ({note})" if note else ""))


def add_wallaroo_version_flag(parser, what):
    """``--wallaroo-version``: the one setting for the Wallaroo release a command targets."""
    from orchzip.runtime.wallaroo_versions import DEFAULT_VERSION, KNOWN_VERSIONS, VERSION_ENV
    parser.add_argument(
        "--wallaroo-version", metavar="VERSION", choices=list(KNOWN_VERSIONS),
        help=f"the Wallaroo release {what} (one of {', '.join(KNOWN_VERSIONS)}; default: "
        f"${VERSION_ENV}, else {DEFAULT_VERSION})",
    )
