"""Shared helpers for commands: JSON for scripts, aligned tables for people, shared flags, and
how chatty progress is (-q / -v)."""

import json
import shutil
import sys

# -1 with -q, 0 by default, 1 with -v (set once by the CLI's main).
_state = {"verbosity": 0, "open_line": False}


def set_verbosity(level):
    _state["verbosity"] = max(-1, min(1, level))


def verbosity():
    return _state["verbosity"]


def note(text):
    """A progress line on stderr, unless -q."""
    if _state["verbosity"] >= 0:
        end_line()
        print(text, file=sys.stderr, flush=True)


def env_progress(line):
    """Progress of a task (or model) environment build, as chatty as asked.

    -v: every line, the installer's included. By default orchzip's own lines (what is built,
    how long it took) are shown and the installer's output is not: on a terminal it passes by in
    one line that rewrites itself. -q: nothing.
    """
    level = _state["verbosity"]
    installer = getattr(line, "from_installer", False)
    if level < 0:
        return
    if level > 0 or not installer:
        note(line)
    elif sys.stderr.isatty():
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        text = line if len(line) <= width else line[:width - 3] + "..."
        sys.stderr.write("\r\x1b[K" + text)
        sys.stderr.flush()
        _state["open_line"] = True


def end_line():
    """Clear a one-line progress left open, before anything else is written to the terminal."""
    if _state["open_line"]:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
        _state["open_line"] = False


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
