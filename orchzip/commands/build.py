"""`orchzip build` (folder -> deterministic zip) and `orchzip inspect` (what a zip holds)."""

import sys

from orchzip.commands._output import add_json_flag, add_wallaroo_version_flag, print_json, print_table


def cmd_build(args):
    from orchzip.builder import build

    result = build(args.folder, args.out, name=args.name, strict=args.strict,
                   max_size=args.max_size, allow_secrets=args.allow_secret or (),
                   check=args.check, wallaroo_version=args.wallaroo_version)
    for warning in result.warnings:
        print(f"orchzip: warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(result.as_dict())
        return 0
    print(f"{result.zip_path}  {result.size:,} bytes  sha256 {result.sha256}")
    if result.environment is not None:
        env = result.environment
        print(f"requirements.txt installs beside wallaroo {env.wallaroo_version}; the task gets "
              f"{describe_versions(env.versions, result.manifest.get('requirements') or ())}")
    return 0


# What a reader looks for first in an environment; the rest follow by name.
FIRST = ("pandas", "pyarrow", "numpy")


def describe_versions(versions, requirements=()):
    """pandas, pyarrow, numpy and the requirements' packages with their versions; the rest counted."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    by_key = {canonicalize_name(n): n for n in versions}
    wanted = list(FIRST) + [canonicalize_name(Requirement(r).name) for r in requirements]
    names = list(dict.fromkeys(by_key[k] for k in wanted if k in by_key))
    text = ", ".join(f"{n} {versions[n]}" for n in names) or "(nothing)"
    rest = len(versions) - len(names)
    return text + (f" and {rest} more (--json lists them)" if rest else "")


def _task_environment(zip_path, wallaroo_version):
    """The check of a zip's requirements.txt for ``inspect``: an EnvironmentCheck or a one-line error."""
    from orchzip.builder import check_environment, zip_requirements
    from orchzip.errors import OrchzipError

    try:
        return check_environment(zip_requirements(zip_path), wallaroo_version).as_dict()
    except OrchzipError as err:
        return {"error": str(err)}


def cmd_inspect(args):
    from orchzip.builder import Limits, inspect_zip

    info = inspect_zip(args.zip, Limits(max_entries=args.max_entries, max_total_bytes=args.max_total_bytes))
    if not args.no_resolve:
        info["environment"] = _task_environment(args.zip, args.wallaroo_version)
    if args.json:
        print_json(info)
        return 0
    print(f"{info['zip']}\n  size    {info['size']:,} bytes\n  sha256  {info['sha256']}")
    print(f"  entry   {info['entry_point'] or '(no main.py: Wallaroo cannot run this zip)'}")
    manifest = info["manifest"]
    if manifest:
        print(f"  built by orchzip {manifest.get('orchzip_version')} at {manifest.get('build_time')}, "
              f"content {str(manifest.get('content_sha256'))[:16]}..., shim vendored: {manifest.get('shim_vendored')}")
        print(f"  requirements: {', '.join(manifest.get('requirements') or []) or '(none)'}")
    else:
        print("  no orchzip manifest (not built by orchzip build)")
    env = info.get("environment")
    if env and "error" in env:
        print(f"  task environment: cannot resolve ({env['error']})")
    elif env and env["conflicts"]:
        print(f"  task environment: requirements.txt conflicts with wallaroo {env['wallaroo_version']}:")
        for line in env["conflicts"]:
            print(f"    {line}")
    elif env:
        shown = describe_versions(env["versions"], (manifest or {}).get("requirements") or ())
        print(f"  task environment (wallaroo {env['wallaroo_version']}): {shown}")
    print_table(info["entries"], ["name", "size", "compressed"])
    return 0


def register(subparsers):
    from orchzip.builder import DEFAULT_MAX_SIZE
    from orchzip.builder._untrusted import MAX_ENTRIES, MAX_TOTAL_BYTES

    p = subparsers.add_parser(
        "build", help="build an orchestration folder into a deterministic, validated zip",
        description="Validate an orchestration folder (main.py, Python 3.10 syntax, "
        "requirements.txt, no credential files) and write OUT/<name>.zip. The same folder always "
        "gives the same bytes: sorted entries, one timestamp (SOURCE_DATE_EPOCH or 1980-01-01), "
        "mode 0644, no bytecode, VCS, virtualenv, editor or OS files; .orchzipignore (gitignore "
        "syntax) excludes more. When a .py file imports orchzip_shim, the shim is put into the zip. "
        "--check resolves requirements.txt beside the wallaroo SDK of the target release.",
    )
    p.add_argument("folder", help="the orchestration folder (holding main.py)")
    p.add_argument("-o", "--out", default="dist", help="where to write the zip (default: dist)")
    p.add_argument("--name", help="the zip's name without .zip (default: the folder's name)")
    p.add_argument("--strict", action="store_true", help="treat warnings (e.g. unpinned requirements) as errors")
    p.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                   help=f"refuse a zip larger than this many bytes (default {DEFAULT_MAX_SIZE:,})")
    p.add_argument("--allow-secret", action="append", metavar="FILE",
                   help="ship this credential file anyway (by its path in the folder); repeatable")
    p.add_argument("--check", action="store_true",
                   help="also resolve requirements.txt (with uv, installing nothing) beside the wallaroo SDK "
                   "of --wallaroo-version and refuse it, one line per conflict, when it cannot be installed there")
    add_wallaroo_version_flag(p, "whose task image --check resolves against")
    add_json_flag(p)
    p.set_defaults(func=cmd_build)

    p = subparsers.add_parser(
        "inspect", help="show what an orchestration zip holds (checked as untrusted)",
        description="Check a zip as untrusted (no absolute paths, '..' or links; bounded entry "
        "count and unpacked size; every entry read) and show its manifest, entries, sha256 and size, "
        "and the package versions its task environment would get under the wallaroo SDK's pins.",
    )
    p.add_argument("zip", help="the zip to inspect")
    p.add_argument("--max-entries", type=int, default=MAX_ENTRIES, help=f"refuse more entries (default {MAX_ENTRIES:,})")
    p.add_argument("--max-total-bytes", type=int, default=MAX_TOTAL_BYTES,
                   help=f"refuse a larger unpacked size (default {MAX_TOTAL_BYTES:,})")
    add_wallaroo_version_flag(p, "whose task environment is shown")
    p.add_argument("--no-resolve", action="store_true",
                   help="do not resolve the task environment (which needs the package index or uv's cache)")
    add_json_flag(p)
    p.set_defaults(func=cmd_inspect)
