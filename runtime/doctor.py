"""Checks of what local runs depend on, each one line with the fix (``orchzip doctor``).

Every check returns a :class:`Check`; none raises for what it finds (a missing Python 3.10 is a
finding, not an error). Probes are bounded: an index or a connection that does not answer
within :data:`PROBE_TIMEOUT_SECONDS` counts as unreachable.
"""

import os
import socket
import subprocess
import urllib.parse

from orchzip.errors import OrchzipError

__all__ = ["Check", "run_checks", "cache_size"]

PROBE_TIMEOUT_SECONDS = 3.0
OK, WARN, FAIL = "ok", "warn", "fail"
# How many of a release's pins to name on its line; the rest are counted (--json lists all).
SHOWN_PINS = ("pandas", "pyarrow", "numpy")


class Check:
    """One finding: ``status`` is ok, warn or fail; ``fix`` says what to do when it is not ok."""

    def __init__(self, name, status, detail, fix=None, data=None):
        self.name, self.status, self.detail, self.fix = name, status, detail, fix
        self.data = data or {}

    def as_dict(self):
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix, **self.data}


def run_checks(store=None, wallaroo_version=None, cache_dir=None):
    """All checks, in the order a user fixes them: Python, uv, index, cache, SDK pins, connections.

    :param store: the state store whose connections are probed (None: no connection checks).
    """
    from orchzip.runtime.environments import default_cache_dir
    cache_dir = cache_dir or default_cache_dir()
    checks = [check_python(), check_uv()]
    index = check_index()
    checks += [index, check_cache(cache_dir), check_pins(wallaroo_version, cache_dir, index.status == OK)]
    if store is not None:
        checks += [check_connection(c) for c in store.list_connections()]
    return checks


def check_python():
    from orchzip.runtime.environments import find_task_python
    try:
        path, version, why = find_task_python()
    except OrchzipError as err:
        return Check("python", FAIL, str(err), "set ORCHZIP_TASK_PYTHON to a working Python 3.10")
    if version.startswith("3.10."):
        return Check("python", OK, f"Python {version} at {path} ({why})", data={"python": path, "version": version})
    return Check("python", WARN, f"no Python 3.10 found; tasks would run on Python {version} at {path}",
                 "install Python 3.10 (what Wallaroo's task image runs), e.g. `pyenv install 3.10`, "
                 "or point ORCHZIP_TASK_PYTHON at one", data={"python": path, "version": version})


def check_uv():
    from orchzip.runtime.environments import uv_binary
    try:
        uv = uv_binary()
        done = subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=20)
    except (OrchzipError, OSError, subprocess.SubprocessError) as err:
        return Check("uv", FAIL, f"uv does not run: {err}", "pip install uv (or run tasks with --no-env)")
    if done.returncode != 0:
        return Check("uv", FAIL, f"{uv} --version failed: {done.stderr.strip()[:200]}", "pip install --force-reinstall uv")
    return Check("uv", OK, f"{done.stdout.strip()} at {uv}", data={"uv": uv})


def check_index():
    from orchzip.runtime.wallaroo_pins import index_status, index_url
    url = index_url()
    reachable, reason = index_status(timeout=PROBE_TIMEOUT_SECONDS)
    if reachable:
        return Check("index", OK, f"package index {url} reachable", data={"url": url})
    return Check("index", WARN, f"package index {url} not reachable ({reason}); environments come from uv's cache only",
                 "connect to the network, or point UV_DEFAULT_INDEX at a reachable index", data={"url": url})


def cache_size(path):
    """``(bytes, environments)`` under ``path``; links are not followed."""
    total, envs = 0, 0
    if not os.path.isdir(path):
        return 0, 0
    for name in os.listdir(path):
        if name.startswith("py") and os.path.isdir(os.path.join(path, name)):
            envs += 1
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass  # removed while we walked
    return total, envs


def check_cache(cache_dir):
    size, envs = cache_size(cache_dir)
    detail = f"{envs} task environment(s), {size / 2**20:,.0f} MiB in {cache_dir}"
    data = {"path": cache_dir, "bytes": size, "environments": envs}
    if size > 20 * 2**30:
        return Check("cache", WARN, detail, f"remove environments no task needs: rm -rf {cache_dir}/py*", data)
    return Check("cache", OK, detail, data=data)


def check_pins(wallaroo_version, cache_dir, online):
    from orchzip.runtime import wallaroo_pins
    from orchzip.runtime.environments import find_task_python, uv_binary
    from orchzip.runtime.wallaroo_versions import resolve_version
    try:
        version = resolve_version(wallaroo_version)
        pins = wallaroo_pins.cached_pins(cache_dir, version)
        if pins is None and online:
            pins = wallaroo_pins.sdk_pins(cache_dir, version, find_task_python()[0], uv_binary())
    except OrchzipError as err:
        return Check("wallaroo", FAIL, str(err), "pick a known version with --wallaroo-version")
    if pins is None:
        return Check("wallaroo", FAIL, f"target wallaroo {version}: its pins are not cached and the index cannot be reached",
                     "connect once so that orchzip reads them from the SDK's metadata", data={"version": version})
    shown = [str(pins.pin(n)) for n in SHOWN_PINS if pins.pin(n) is not None]
    more = len(pins.lines) - len(shown)
    return Check("wallaroo", OK, f"target wallaroo {version}: pins {', '.join(shown)}"
                 + (f" and {more} more" if more > 0 else ""), data={"version": version, "pins": pins.lines})


# -- connections ----------------------------------------------------------------------------

def check_connection(connection):
    """Whether one connection of the store can be reached from here (nothing is read or written)."""
    from orchzip_shim.context import expand_env
    name, kind = connection["name"], connection["type"]
    label = f"connection {name}"
    try:
        details = expand_env(connection["details"])
    except OrchzipError as err:
        return Check(label, FAIL, f"{kind}: {err}")  # the message says which variable to export
    probe = _PROBES.get(kind)
    if probe is None:
        return Check(label, WARN, f"{kind}: orchzip has no check for this type", None)
    status, detail, fix = probe(details)
    return Check(label, status, f"{kind}: {detail}", fix if status != OK else None, data={"type": kind})


def _path_probe(details, will_create):
    raw = details.get("path")
    if not raw:
        return FAIL, "no 'path' in its details", "recreate it with --details '{\"path\": ...}'"
    path = os.path.abspath(os.path.expanduser(raw))
    if os.path.exists(path):
        return OK, f"{path} exists", None
    parent = os.path.dirname(path)
    if os.path.isdir(parent) and os.access(parent, os.W_OK):
        return (OK if will_create else WARN), f"{path} does not exist yet ({os.path.basename(path)} is created when written)", \
            f"create {path}, or fix the path if the connection is read"
    return FAIL, f"{path}: neither it nor its folder exists", f"create the folder {parent} or fix the connection's path"


def _tcp_probe(url):
    """``(ok, where, reason)`` of a TCP connection to the host of ``url``."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{host}:{port}"  # never the user, password or query of the URL
    if not host:
        return False, url, "no host in the URL"
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS):
            return True, where, ""
    except OSError as err:
        return False, where, str(err) or type(err).__name__


def _http_probe(details):
    url = details.get("host") or details.get("url")
    if not url:
        return FAIL, "no 'host' or 'url' in its details", "recreate it with --details '{\"host\": \"http://...\"}'"
    ok, where, reason = _tcp_probe(str(url))
    if ok:
        return OK, f"{where} answers", None
    return FAIL, f"{where} not reachable ({reason})", f"start the server at {where} or fix the connection's host"


def _bigquery_probe(details):
    endpoint = details.get("api_endpoint") or os.environ.get("BIGQUERY_EMULATOR_HOST") or "https://bigquery.googleapis.com"
    ok, where, reason = _tcp_probe(str(endpoint))
    if ok:
        return OK, f"{where} answers", None
    return FAIL, f"{where} not reachable ({reason})", \
        f"start the BigQuery emulator at {where}, fix api_endpoint, or check the network"


_PROBES = {
    "DUCKDB": lambda details: _path_probe(details, will_create=True),
    "FILE": lambda details: _path_probe(details, will_create=False),
    "HTTP": _http_probe,
    "BIGQUERY": _bigquery_probe,
}
