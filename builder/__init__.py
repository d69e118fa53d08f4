"""The build side: collect an orchestration folder, validate it, write its zip, inspect zips.

    result = build("orchestrations/houseprice_local", "dist")
    result.zip_path, result.sha256, result.warnings

Shipping a zip to a Wallaroo instance is another job, done by ``orchzip.mlops``.
"""

import ast
import hashlib
import io
import json
import os
import tempfile

from orchzip.errors import ConfigError

from ._untrusted import Limits, UnsafeZip, safe_extract, verify
from ._write import MANIFEST_NAME, SHIM_PACKAGE, fixed_timestamp, shim_files, zip_bytes

# Collecting (pathspec), validating (packaging, detect-secrets) and checking an environment are
# imported when a build needs them: the CLI imports this package for every command's --help.
_LAZY = {"check_environment": "._check", "EnvironmentCheck": "._check"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "build",
    "build_unless_unchanged",
    "BuildResult",
    "InvalidOrchestration",
    "inspect_zip",
    "safe_extract",
    "find_entry_point",
    "Limits",
    "UnsafeZip",
    "DEFAULT_MAX_SIZE",
    "EnvironmentCheck",
    "check_environment",
    "zip_requirements",
]

DEFAULT_MAX_SIZE = 100 * 1024 * 1024  # Wallaroo's own limit is not published; 100 MiB is generous for code


class InvalidOrchestration(ConfigError):
    """The folder fails one or more checks; the message lists each, one per line."""

    @classmethod
    def from_problems(cls, folder, problems):
        if len(problems) == 1:
            return cls(f"cannot build {folder}: {problems[0]}")
        lines = "\n".join(f"  {p}" for p in problems)
        return cls(f"cannot build {folder} ({len(problems)} problems):\n{lines}")


class BuildResult:
    """``environment``: the :class:`EnvironmentCheck` of a build with ``check``, else None."""

    def __init__(self, zip_path, sha256, size, manifest, warnings, environment=None):
        self.zip_path, self.sha256, self.size = zip_path, sha256, size
        self.manifest, self.warnings, self.environment = manifest, warnings, environment

    def as_dict(self):
        found = {"zip": self.zip_path, "sha256": self.sha256, "size": self.size,
                 "manifest": self.manifest, "warnings": self.warnings}
        if self.environment is not None:
            found["environment"] = self.environment.as_dict()
        return found


def find_entry_point(names):
    """main.py at the root, else the first main.py in a subfolder (Wallaroo's rule), or None."""
    if "main.py" in names:
        return "main.py"
    nested = sorted(n for n in names if n.endswith("/main.py"))
    return nested[0] if nested else None


def _read_text(path):
    with open(path, encoding="utf-8-sig") as fh:  # a UTF-8 BOM is fine, as for pip and Python
        return fh.read()


def _imports_shim(source):
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == SHIM_PACKAGE for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == SHIM_PACKAGE:
            return True
    return False


def build(folder, out_dir, name=None, strict=False, max_size=DEFAULT_MAX_SIZE, allow_secrets=(),
          check=False, wallaroo_version=None):
    """Validate ``folder`` and write ``out_dir/<name>.zip``; returns a :class:`BuildResult`.

    :param name: the zip's name (default: the folder's name).
    :param strict: treat every warning as an error.
    :param max_size: refuse a zip larger than this many bytes.
    :param allow_secrets: names of credential files that may ship anyway.
    :param check: also resolve requirements.txt beside the wallaroo SDK of ``wallaroo_version``
        (see :func:`check_environment`) and refuse it when it conflicts.
    :raises InvalidOrchestration: listing every problem; nothing is written then.
    """
    from ._check import check_environment
    from ._collect import collect
    from ._validate import validate

    folder = os.path.abspath(folder)
    if not os.path.isdir(folder):
        raise ConfigError(f"{folder}: not a folder; give the orchestration folder holding main.py")
    name = name or os.path.basename(folder.rstrip(os.sep))
    collected = collect(folder)
    files = collected.files
    too_many = _over_limits(files)
    if too_many:  # before reading any content
        raise InvalidOrchestration.from_problems(folder, too_many)
    errors, warnings, requirements = validate(files, _read_text, allow_secrets)
    errors = [f"{n}: refused, {why}" for n, why in collected.refused] + errors
    warnings = [f"{n}: left out, {why}" for n, why in collected.dropped] + warnings
    if strict and warnings:
        errors, warnings = errors + [f"{w} (an error with --strict)" for w in warnings], []
    if errors:
        raise InvalidOrchestration.from_problems(folder, errors)
    environment = check_environment(requirements, wallaroo_version) if check else None
    if environment is not None and environment.conflicts:
        raise InvalidOrchestration.from_problems(folder, [f"requirements.txt: {c}" for c in environment.conflicts])
    entries = []
    for arcname, path in files:
        with open(path, "rb") as fh:
            entries.append((arcname, fh.read()))
    vendored = any(n.endswith(".py") and _imports_shim(d.decode("utf-8-sig")) for n, d in entries)
    if vendored:
        if any(n.startswith(f"{SHIM_PACKAGE}/") for n, _ in entries):
            raise InvalidOrchestration.from_problems(folder, [
                f"{SHIM_PACKAGE}/: the folder has its own copy of the shim; remove it, the build adds the installed one"])
        entries = sorted(entries + shim_files())
    manifest_fields = {"name": name, "entry_point": find_entry_point([n for n, _ in entries]),
                       "requirements": requirements, "shim_vendored": vendored}
    data, manifest = zip_bytes(entries, manifest_fields, fixed_timestamp())
    if len(data) > max_size:
        raise InvalidOrchestration.from_problems(folder, [
            f"{name}.zip: {len(data):,} bytes is over the size limit of {max_size:,}; "
            f"list large files in .orchzipignore or raise --max-size"])
    try:  # what inspect, run and upload would refuse is not written (e.g. a compression ratio)
        verify(io.BytesIO(data), label=f"{name}.zip")
    except UnsafeZip as err:
        raise InvalidOrchestration.from_problems(folder, [f"{err}; list such files in .orchzipignore"]) from None
    return BuildResult(_write_atomically(out_dir, f"{name}.zip", data), hashlib.sha256(data).hexdigest(),
                       len(data), manifest, warnings, environment)


def build_unless_unchanged(folder, out_dir):
    """The zip of ``folder`` in ``out_dir`` for a run: the last build's when nothing it is made of
    changed (see ``_reuse``), else a new :func:`build`. Returns the zip's path."""
    from ._reuse import remember, reusable, source_key

    folder = os.path.abspath(folder)
    name = os.path.basename(folder.rstrip(os.sep))
    key = source_key(folder, name)  # a missing folder gives a key no zip has: build() refuses it
    zip_path = os.path.abspath(os.path.join(out_dir, f"{name}.zip"))
    if reusable(zip_path, key):
        return zip_path
    result = build(folder, out_dir, name=name)
    # The files may have changed while they were built: then the key no longer says what the
    # zip holds, and the next run builds again rather than trust it.
    if source_key(folder, name) == key:
        remember(result.zip_path, key, result.sha256)
    return result.zip_path


def _over_limits(files):
    """Problems when ``files`` make more entries or bytes than an untrusted zip may hold."""
    limits = Limits()
    # +1 for the manifest; the zip's exact count (with a vendored shim) is verified once written.
    if len(files) + 1 > limits.max_entries:
        return [f"{len(files):,} files are more than a zip may hold ({limits.max_entries:,} entries, "
                f"as orchzip inspect and run check); list what the task does not need in .orchzipignore"]
    total = sum(os.path.getsize(path) for _, path in files)
    if total > limits.max_total_bytes:
        return [f"the files add up to {total:,} bytes, more than a zip may unpack to ({limits.max_total_bytes:,}, "
                f"as orchzip inspect and run check); list large files in .orchzipignore"]
    return []


def _write_atomically(out_dir, file_name, data):
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.abspath(os.path.join(out_dir, file_name))
    fd, tmp = tempfile.mkstemp(prefix=f".{file_name}.", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def inspect_zip(zip_path, limits=None):
    """What a zip holds: entries, manifest (if orchzip built it), sha256 and size.

    Every entry is read through the untrusted-zip checks first.
    """
    infos = verify(zip_path, limits)
    with open(zip_path, "rb") as fh:
        sha256 = hashlib.sha256(fh.read()).hexdigest()
    import zipfile

    manifest = None
    with zipfile.ZipFile(zip_path) as archive:
        if MANIFEST_NAME in archive.namelist():
            try:
                manifest = json.loads(archive.read(MANIFEST_NAME))
            except ValueError:
                manifest = None
    names = [i.filename for i in infos if not i.is_dir()]
    return {
        "zip": os.path.abspath(zip_path),
        "sha256": sha256,
        "size": os.path.getsize(zip_path),
        "entry_point": find_entry_point(names),
        "manifest": manifest,
        "entries": [{"name": i.filename, "size": i.file_size, "compressed": i.compress_size}
                    for i in infos if not i.is_dir()],
    }


def zip_requirements(zip_path):
    """The requirement lines of a zip's requirements.txt (at its root, else the first one)."""
    import zipfile

    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        found = "requirements.txt" if "requirements.txt" in names else next(
            iter(sorted(n for n in names if n.endswith("/requirements.txt"))), None)
        if found is None:
            return []
        text = archive.read(found).decode("utf-8", errors="replace")
    lines = (raw.split(" #", 1)[0].strip() for raw in text.splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]
