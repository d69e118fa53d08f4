"""Reuse the zip of a folder that has not changed since its last build (``orchzip run FOLDER``).

Building validates, scans every file for secrets and zips: about 0.2 s, paid by every run of
a folder although the folder rarely changes between runs. The last build into a directory
leaves a small record beside its zip: a key over everything the zip is made of (each file's
name and content after the ignore rules, the shim it could vendor, the builder's own code,
the timestamp and orchzip's version) and the zip's sha256. When the key is the same and the
zip on disk still has that sha256, the same build would write the same bytes, warnings and
refusals included, so the zip is used as it is. Contents are hashed, not timestamps: a
file changed within one clock tick still changes the key.
"""

import hashlib
import json
import os
import tempfile

from orchzip import __version__

from ._collect import collect
from ._write import fixed_timestamp, shim_files

BUILDER_DIR = os.path.dirname(os.path.abspath(__file__))


def source_key(folder, name):
    """The key of what a build of ``folder`` as ``name`` is made of (see the module docstring)."""
    digest = hashlib.sha256()

    def add(label, data):
        digest.update(label.encode("utf-8", "surrogateescape") + b"\0" + hashlib.sha256(data).digest())

    add("orchzip", f"{__version__} {name} {fixed_timestamp()}".encode())
    for file_name in sorted(os.listdir(BUILDER_DIR)):
        if file_name.endswith(".py"):
            with open(os.path.join(BUILDER_DIR, file_name), "rb") as fh:
                add(f"builder/{file_name}", fh.read())
    for arcname, data in shim_files():
        add(f"shim/{arcname}", data)
    collected = collect(folder)
    for arcname, path in collected.files:
        with open(path, "rb") as fh:
            add(f"file/{arcname}", fh.read())
    for kind, found in (("dropped", collected.dropped), ("refused", collected.refused)):
        for arcname, why in found:
            add(f"{kind}/{arcname}", why.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _record_path(zip_path):
    return os.path.join(os.path.dirname(zip_path), f".{os.path.basename(zip_path)}.source")


def reusable(zip_path, key):
    """Whether ``zip_path`` is the build of ``key``, byte for byte as written."""
    try:
        with open(_record_path(zip_path), encoding="utf-8") as fh:
            record = json.load(fh)
        with open(zip_path, "rb") as fh:
            sha256 = hashlib.sha256(fh.read()).hexdigest()
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("key") == key and record.get("sha256") == sha256


def remember(zip_path, key, sha256):
    """Record that ``zip_path`` (whose content has ``sha256``) is the build of ``key``."""
    target = _record_path(zip_path)
    fd, tmp = tempfile.mkstemp(prefix=".source.", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"key": key, "sha256": sha256}, fh)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
