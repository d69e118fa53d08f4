"""What a wallaroo SDK release pins, read from the SDK's own published metadata.

Wallaroo's task image already holds the SDK and the packages it pins (``pandas==2.2.0``,
``pyarrow==14.0.1``, ... for 2026.1.3); a zip's requirements.txt is installed beside them.
The pins are the ``Requires-Dist`` lines of the SDK wheel's METADATA: uv fetches the wheel
(without its dependencies) from the package index into a throwaway folder, and the lines are
kept in ``<env cache>/wallaroo-sdk/<version>.json``, so that every later use works offline.
The SDK itself never enters a task environment; orchzip's stand-in plays it there.

The index is uv's (``$UV_DEFAULT_INDEX``, ``$UV_INDEX_URL``, else PyPI). When it cannot be
reached, uv runs with ``--offline`` and uses what its own cache holds.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from email.parser import Parser

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from orchzip.errors import ConfigError

__all__ = [
    "SdkPins",
    "IndexUnreachable",
    "sdk_pins",
    "cached_pins",
    "index_url",
    "index_status",
    "direct_conflicts",
    "pins_dir",
]

SDK = "wallaroo"
PROBE_TIMEOUT_SECONDS = 5.0
UV_TIMEOUT_SECONDS = 300


class IndexUnreachable(ConfigError):
    """The package index cannot be reached and what was needed is not cached."""

    @classmethod
    def from_args(cls, what, url, reason):
        return cls(
            f"cannot reach the package index {url} ({reason}) and {what} is not cached yet; "
            f"connect once to cache it, or point $UV_DEFAULT_INDEX at a reachable index"
        )


class SdkPins:
    """The requirements one SDK release declares (its extras left out).

    ``requires`` holds :class:`packaging.requirements.Requirement` objects; ``lines`` the same
    as text, the form written into uv's constraints file.
    """

    def __init__(self, version, requires_dist, requires_python=None):
        self.version, self.requires_python = version, requires_python
        self.requires = []
        for line in requires_dist:
            req = Requirement(line)
            if req.marker is None or "extra" not in str(req.marker):
                self.requires.append(req)
        self.lines = [str(r) for r in self.requires]

    def for_python(self, python_version):
        """The pins that apply on ``python_version`` (``"3.10.13"``): markers evaluated."""
        env = dict(default_environment(), extra="",
                   python_version=".".join(python_version.split(".")[:2]), python_full_version=python_version)
        return [r for r in self.requires if r.marker is None or r.marker.evaluate(env)]

    def pin(self, name, python_version=None):
        """The SDK's requirement on package ``name``, or None."""
        key = canonicalize_name(name)
        reqs = self.for_python(python_version) if python_version else self.requires
        return next((r for r in reqs if canonicalize_name(r.name) == key), None)

    def constraints_text(self):
        return "".join(line + "\n" for line in self.lines)

    def as_dict(self):
        return {"version": self.version, "requires_python": self.requires_python, "pins": self.lines}


def pins_dir(cache_dir):
    return os.path.join(os.path.abspath(cache_dir), "wallaroo-sdk")


def _pins_file(cache_dir, version):
    return os.path.join(pins_dir(cache_dir), f"{version}.json")


def cached_pins(cache_dir, version):
    """The pins of ``version`` if they are cached, else None (never touches the network)."""
    try:
        with open(_pins_file(cache_dir, version), encoding="utf-8") as fh:
            data = json.load(fh)
        return SdkPins(data["version"], data["requires_dist"], data.get("requires_python"))
    except (OSError, ValueError, KeyError, InvalidRequirement):
        return None


def sdk_pins(cache_dir, version, python, uv):
    """The pins of wallaroo ``version``: from the cache, else from the package index.

    :param cache_dir: the environment cache (see ``environments.default_cache_dir``).
    :param python: the task interpreter (uv picks the wheel for it).
    :param uv: the path of the uv binary.
    :raises IndexUnreachable: offline with nothing cached.
    :raises ConfigError: the index has no such release, or uv failed otherwise.
    """
    found = cached_pins(cache_dir, version)
    if found is not None:
        return found
    metadata = _fetch_metadata(version, python, uv)
    requires_dist = metadata.get_all("Requires-Dist") or []
    pins = SdkPins(version, requires_dist, metadata.get("Requires-Python"))
    os.makedirs(pins_dir(cache_dir), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{version}.", dir=pins_dir(cache_dir))
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"version": version, "requires_dist": requires_dist,
                   "requires_python": metadata.get("Requires-Python"), "index": index_url()}, fh, indent=1)
    os.replace(tmp, _pins_file(cache_dir, version))
    return pins


def _fetch_metadata(version, python, uv):
    """The METADATA of the SDK wheel, installed by uv (no dependencies) into a throwaway folder."""
    target = tempfile.mkdtemp(prefix="orchzip-wallaroo-sdk-")
    try:
        args = ["pip", "install", "--no-deps", "--python", python, "--target", target, f"{SDK}=={version}"]
        offline, reason = uv_offline()
        done = run_uv(uv, args + (["--offline"] if offline else []))
        if done.returncode != 0:
            if offline:
                raise IndexUnreachable.from_args(f"wallaroo {version}'s metadata", index_url(), reason)
            raise ConfigError(f"cannot read wallaroo {version}'s metadata from {index_url()}; uv says: "
                              + uv_reason(done.stdout))
        info = [n for n in os.listdir(target) if n.lower().startswith(f"{SDK}-") and n.endswith(".dist-info")]
        if not info:
            raise ConfigError(f"uv installed no {SDK}-{version}.dist-info; cannot read the SDK's pins")
        with open(os.path.join(target, info[0], "METADATA"), encoding="utf-8") as fh:
            return Parser().parse(fh)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def run_uv(uv, args, input_text=None, cwd=None):
    """Run uv quietly and without colour; stdout and stderr come back together as ``stdout``."""
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", NO_COLOR="1", UV_NO_PROGRESS="1")
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    try:
        return subprocess.run([uv, *args], input=input_text, cwd=cwd, env=env, text=True, errors="replace",
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=UV_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as err:
        raise ConfigError(f"uv {args[0]} {args[1] if len(args) > 1 else ''} did not finish within "
                          f"{UV_TIMEOUT_SECONDS} s (is the package index {index_url()} slow?)") from err


def uv_reason(output):
    """uv's own reason for a failure, joined into one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith(("error:", "×"))), 0)
    return " ".join(lines[start:start + 6])


# -- the index ------------------------------------------------------------------------------

def index_url():
    """The index uv resolves from (uv does not read pip's configuration)."""
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if os.environ.get(name):
            return os.environ[name].split()[0]
    return "https://pypi.org/simple"


def index_status(timeout=PROBE_TIMEOUT_SECONDS):
    """``(reachable, reason)``: one request to the index's page of the SDK, bounded by ``timeout``."""
    url = index_url().rstrip("/") + f"/{SDK}/"
    if url.startswith("file://"):
        path = url[len("file://"):]
        return (os.path.isdir(path), "" if os.path.isdir(path) else f"{path} does not exist")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True, ""
    except urllib.error.HTTPError:
        return True, ""  # it answered: reachable, whatever it thinks of a HEAD request
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return False, str(reason) or type(reason).__name__


_offline_answer = {}  # index URL -> (when asked, (offline, reason))
ANSWER_SECONDS = 300.0  # a long-lived process (orchzip serve) asks again after this long


def uv_offline():
    """``(offline, reason)``: whether uv must run with ``--offline``, asked at most every few minutes."""
    if os.environ.get("UV_OFFLINE", "").lower() in ("1", "true", "yes"):
        return True, "UV_OFFLINE is set"
    url = index_url()
    asked = _offline_answer.get(url)
    if asked is None or time.monotonic() - asked[0] > ANSWER_SECONDS:
        reachable, reason = index_status()
        asked = _offline_answer[url] = (time.monotonic(), (not reachable, reason))
    return asked[1]


# -- conflicts ------------------------------------------------------------------------------

def direct_conflicts(requirement_lines, pins, python_version):
    """One line per requirement that cannot hold beside the SDK's own pin of the same package.

    ``pandas==1.5.3`` against the SDK's ``pandas==2.2.0`` is one; ranges that only overlap or
    not through other packages are uv's to judge (see ``environments.resolve``).
    """
    found = []
    for line in requirement_lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        pin = pins.pin(req.name, python_version)
        if pin is None or canonicalize_name(req.name) == SDK:
            continue
        if not _compatible(req.specifier, pin.specifier):
            found.append(f"{line.strip()} conflicts with wallaroo {pins.version}'s {pin}")
    return found


def _exact(specifier):
    specs = list(specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def _compatible(wanted, pinned):
    exact = _exact(pinned)
    if exact is not None:
        return wanted.contains(exact, prereleases=True)
    exact = _exact(wanted)
    if exact is not None:
        return pinned.contains(exact, prereleases=True)
    return True
