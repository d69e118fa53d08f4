"""Write an orchestration zip whose bytes depend only on the files that go into it.

Entries are sorted, every entry carries one fixed timestamp (``SOURCE_DATE_EPOCH`` when set,
else 1980-01-01) and the same permissions (0644), and the manifest's build time is that same
timestamp. Deflate output is the same wherever the same zlib runs (CPython's own builds).
"""

import datetime
import hashlib
import importlib.resources
import io
import json
import os
import zipfile

from orchzip import __version__

MANIFEST_NAME = "orchzip.json"
SHIM_PACKAGE = "orchzip_shim"
EPOCH_1980 = 315532800  # the earliest time a zip entry can carry
FILE_MODE = 0o100644  # regular file, rw-r--r--


def fixed_timestamp():
    """Seconds since the epoch for every entry: ``SOURCE_DATE_EPOCH`` or 1980-01-01."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    try:
        return max(int(value), EPOCH_1980) if value else EPOCH_1980
    except ValueError:
        return EPOCH_1980


def _zip_info(name, timestamp):
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    info = zipfile.ZipInfo(name, date_time=moment.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so that external_attr holds the mode bits
    info.external_attr = FILE_MODE << 16
    return info


def shim_files():
    """``[(archive name, bytes)]`` of the installed shim package (sources only)."""
    found = []

    def walk(node, prefix):
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                if child.name != "__pycache__":
                    walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".py") or child.name == "py.typed":
                found.append((f"{prefix}{child.name}", child.read_bytes()))

    walk(importlib.resources.files(SHIM_PACKAGE), f"{SHIM_PACKAGE}/")
    return found


def content_hash(entries):
    """sha256 over every entry's name and content: the bundle's identity."""
    digest = hashlib.sha256()
    for name, data in entries:
        digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def write_zip(stream, entries, manifest_fields, timestamp):
    """Write ``entries`` (sorted ``[(name, bytes)]``) and the manifest into ``stream``.

    :returns: the manifest written (a dict).
    """
    manifest = dict(manifest_fields)
    manifest.update(
        orchzip_version=__version__,
        content_sha256=content_hash(entries),
        build_time=datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(),
        files=len(entries),
    )
    with zipfile.ZipFile(stream, "w") as archive:
        for name, data in entries:
            archive.writestr(_zip_info(name, timestamp), data, compresslevel=9)
        archive.writestr(_zip_info(MANIFEST_NAME, timestamp),
                         json.dumps(manifest, indent=2, sort_keys=True) + "\n", compresslevel=9)
    return manifest


def zip_bytes(entries, manifest_fields, timestamp):
    buffer = io.BytesIO()
    manifest = write_zip(buffer, entries, manifest_fields, timestamp)
    return buffer.getvalue(), manifest
