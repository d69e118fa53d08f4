"""Open zips that may come from anyone: refuse path tricks, links and zip bombs.

Names must be relative, without ``..``, backslashes or drive letters, and appear once; no
entry may be a link or encrypted; the entry count, the total size and the compression ratio are bounded, and the sizes
are counted on the bytes actually inflated, not taken from the headers.
"""

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib

from orchzip.errors import ConfigError

MAX_ENTRIES = 10_000
MAX_TOTAL_BYTES = 1 << 30
MAX_RATIO = 200  # inflated / compressed, over the whole zip
CHUNK = 1 << 16
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeZip(ConfigError):
    """A zip that is corrupt, or that would write outside its folder or blow up when unpacked."""


class Limits:
    def __init__(self, max_entries=MAX_ENTRIES, max_total_bytes=MAX_TOTAL_BYTES, max_ratio=MAX_RATIO):
        self.max_entries, self.max_total_bytes, self.max_ratio = max_entries, max_total_bytes, max_ratio


def _check_name(zip_path, info):
    name = info.filename
    if info.flag_bits & 0x1:
        raise UnsafeZip(f"{zip_path}: refused, entry {name!r} is encrypted; orchestration zips hold plain "
                        f"entries (Wallaroo cannot unpack it either): zip it again without a password")
    parts = name.split("/")
    if (name.startswith("/") or "\\" in name or _DRIVE.match(name) or "\0" in name
            or any(p == ".." for p in parts)):
        raise UnsafeZip(f"{zip_path}: refused, entry {name!r} would be written outside the "
                        f"folder it is unpacked into (absolute path or '..')")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeZip(f"{zip_path}: refused, entry {name!r} is a symbolic link; "
                        f"orchestration zips hold regular files only")


def _check_entries(zip_path, infos):
    seen = set()
    for info in infos:
        _check_name(zip_path, info)
        key = info.filename.rstrip("/")
        if key in seen:
            raise UnsafeZip(f"{zip_path}: refused, entry {info.filename!r} appears twice; which one a tool "
                            f"unpacks differs, so rebuild the zip with each name once (orchzip build does)")
        seen.add(key)


def open_checked(zip_path, limits=None, label=None):
    """A ``ZipFile`` whose entry names, links and declared sizes passed the checks.

    :param zip_path: a path, or a binary file object (then ``label`` names it in messages).
    """
    limits = limits or Limits()
    source, zip_path = zip_path, label or zip_path
    try:
        archive = zipfile.ZipFile(source)
    except FileNotFoundError:
        raise ConfigError(f"{zip_path}: no such file") from None
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise UnsafeZip(f"{zip_path}: not a readable zip file ({err}); rebuild it with: orchzip build FOLDER") from None
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        archive.close()
        raise UnsafeZip(f"{zip_path}: refused, {len(infos)} entries is more than the limit of {limits.max_entries}")
    declared = sum(i.file_size for i in infos)
    try:
        _check_entries(zip_path, infos)
    except UnsafeZip:
        archive.close()
        raise
    if declared > limits.max_total_bytes:
        archive.close()
        raise UnsafeZip(f"{zip_path}: refused, it unpacks to {declared:,} bytes, more than the limit of "
                        f"{limits.max_total_bytes:,}")
    return archive


class _Budget:
    """Counts inflated bytes against the total and ratio limits while reading."""

    def __init__(self, zip_path, archive, limits):
        self.zip_path, self.limits = zip_path, limits
        compressed = sum(i.compress_size for i in archive.infolist())
        self.allowed = min(limits.max_total_bytes, max(compressed, CHUNK) * limits.max_ratio)
        self.used = 0

    def spend(self, n):
        self.used += n
        if self.used > self.allowed:
            raise UnsafeZip(f"{self.zip_path}: refused, it inflates past {self.allowed:,} bytes "
                            f"(a zip bomb, or entries whose sizes lie)")


def _copy_entry(archive, info, out, budget, zip_path):
    try:
        with archive.open(info) as src:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    return
                budget.spend(len(chunk))
                if out is not None:
                    out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise UnsafeZip(f"{zip_path}: entry {info.filename!r} is corrupt ({err}); rebuild the zip") from None
    except (NotImplementedError, RuntimeError) as err:  # an unknown compression method or encryption
        raise UnsafeZip(f"{zip_path}: entry {info.filename!r} cannot be read ({err}); zip it again with "
                        f"plain deflate (orchzip build does)") from None


def verify(zip_path, limits=None, label=None):
    """Read every entry through the checks without writing anything; returns the infos."""
    with open_checked(zip_path, limits, label) as archive:
        zip_path = label or zip_path
        budget = _Budget(zip_path, archive, limits or Limits())
        for info in archive.infolist():
            if not info.is_dir():
                _copy_entry(archive, info, None, budget, zip_path)
        return archive.infolist()


def safe_extract(zip_path, dest_dir, limits=None):
    """Unpack ``zip_path`` into ``dest_dir`` (which must not exist yet), or refuse it whole.

    The zip is unpacked into a temporary folder beside ``dest_dir`` and renamed into place,
    so a refused zip leaves nothing behind.
    """
    dest_dir = os.path.abspath(dest_dir)
    parent = os.path.dirname(dest_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    try:
        with open_checked(zip_path, limits) as archive:
            budget = _Budget(zip_path, archive, limits or Limits())
            for info in archive.infolist():
                target = os.path.join(staging, *info.filename.split("/"))
                if info.is_dir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as out:
                    _copy_entry(archive, info, out, budget, zip_path)
        os.replace(staging, dest_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest_dir
