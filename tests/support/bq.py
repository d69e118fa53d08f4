"""A real BigQuery emulator for tests and benchmarks: bqemulator on loopback, never mocks.

- :func:`emulator_python` builds bqemulator's own virtual environment once per machine (uv,
  cached under ``$ORCHZIP_TEST_CACHE`` or ``~/.cache/orchzip-tests``; built in a temporary
  directory and renamed into place, so a half-built one is never used).
- :func:`running_emulator` starts ``bqemulator_launcher.py`` (offline tweaks, see there) on free
  loopback ports, waits for ``/healthz`` and always stops it.
- :class:`TokenServer` answers the OAuth token requests of the official credentials flow, so
  service-account keys work offline (the emulator itself ignores tokens).

Fixtures: ``bq_emulator`` (session), ``bq_token_server`` (session), ``bq_service_account_key``.
Use them with ``from tests.support.bq import bq_emulator, ...  # noqa: F401``.
"""

import contextlib
import fcntl
import glob
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

BQEMULATOR_VERSION = "1.4.0"
PROJECT = "test"
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bqemulator_launcher.py")
START_DEADLINE_SECONDS = 60
INSTALL_DEADLINE_SECONDS = 600


def cache_dir():
    base = os.environ.get("ORCHZIP_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "orchzip-tests")
    os.makedirs(base, exist_ok=True)
    return base


def _uv():
    found = shutil.which("uv") or os.path.join(os.path.dirname(sys.executable), "uv")
    if not os.path.exists(found):
        raise RuntimeError("the BigQuery emulator tests need uv (pip install uv)")
    return found


def _emulator_interpreter():
    """A Python >= 3.11 (bqemulator needs it): this one, else a pyenv one."""
    if os.environ.get("ORCHZIP_BQEMULATOR_PYTHON"):
        return os.environ["ORCHZIP_BQEMULATOR_PYTHON"]
    if sys.version_info >= (3, 11):
        return sys.executable
    root = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", "3.1[1-9]*", "bin", "python3.1?")))
    if not found:
        raise RuntimeError("bqemulator needs Python >= 3.11; set ORCHZIP_BQEMULATOR_PYTHON to one")
    return found[0]


def _run(argv, what, env=None):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_DEADLINE_SECONDS, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(argv)}):\n{done.stderr[-3000:]}")


def emulator_python():
    """The interpreter of bqemulator's own virtual environment, built on first use."""
    # numpy: bqemulator imports it without declaring it.
    return cached_venv(f"bqemulator-{BQEMULATOR_VERSION}", [f"bqemulator=={BQEMULATOR_VERSION}", "numpy"],
                       _emulator_interpreter())


def cached_venv(name, packages, interpreter):
    """The python of a virtual environment with ``packages``, built once under :func:`cache_dir`."""
    target = os.path.join(cache_dir(), name)
    python = os.path.join(target, "bin", "python")
    ready = os.path.join(target, ".orchzip-ready")
    if os.path.exists(ready):
        return python
    with open(os.path.join(cache_dir(), f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second test session waits for the first build
        if os.path.exists(ready):
            return python
        building = tempfile.mkdtemp(prefix=f"{name}.", dir=cache_dir())
        env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
        try:
            _run([_uv(), "venv", "--python", interpreter, building], f"creating the venv {name}", env)
            _run([_uv(), "pip", "install", "--python", os.path.join(building, "bin", "python"), *packages],
                 f"installing {' '.join(packages)}", env)
            open(os.path.join(building, ".orchzip-ready"), "w").close()
            if os.path.exists(target):
                shutil.rmtree(target)  # a build that never became ready
            os.rename(building, target)  # the venv does not depend on its directory's name
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return python


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """A running bqemulator: ``rest_url``, ``grpc_endpoint``, ``project``."""

    def __init__(self, rest_port, grpc_port, process, log_path):
        self.rest_url = f"http://127.0.0.1:{rest_port}"
        self.grpc_endpoint = f"127.0.0.1:{grpc_port}"
        self.project = PROJECT
        self.process = process
        self.log_path = log_path

    def client(self):
        """An official google-cloud-bigquery client on the emulator (no credentials)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=self.rest_url))

    def details(self, dataset, table, key=None, **extra):
        """Connection details as a user would write them, pointed at this emulator."""
        details = dict(key or {"project_id": self.project})
        details.update(dataset=dataset, table=table, api_endpoint=self.rest_url, **extra)
        return details

    def log_tail(self, lines=30):
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])


def _healthy(url):
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_emulator(log_dir=None):
    """Start bqemulator on free loopback ports; stop it when the block ends."""
    python = emulator_python()
    rest_port, grpc_port = free_port(), free_port()
    log_dir = log_dir or tempfile.mkdtemp(prefix="orchzip-bqemulator-")
    log_path = os.path.join(log_dir, "bqemulator.log")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    for name in ("BIGQUERY_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        env.pop(name, None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [python, LAUNCHER, "start", "--rest-host", "127.0.0.1", "--grpc-host", "127.0.0.1",
             "--rest-port", str(rest_port),
             "--grpc-port", str(grpc_port), "--project", PROJECT],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )
    emulator = Emulator(rest_port, grpc_port, process, log_path)
    try:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while not _healthy(emulator.rest_url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bqemulator did not start; its log ends:\n{emulator.log_tail()}")
            time.sleep(0.1)
        yield emulator
    finally:
        _stop(process)


def _stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class TokenServer:
    """OAuth token endpoint on loopback: ``/token`` grants a token, ``/refuse`` says invalid_grant."""

    def __init__(self):
        handler = self._handler()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.requests = 0
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                server.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/refuse"):
                    status, body = 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
                else:
                    status, body = 200, {"access_token": "x", "expires_in": 3600, "token_type": "Bearer"}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        return Handler

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def service_account_key(token_uri, project=PROJECT):
    """A freshly generated service-account key dict (as in a Google JSON key file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": f"orchzip-tests@{project}.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory):
    with running_emulator(str(tmp_path_factory.mktemp("bqemulator"))) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def bq_token_server():
    server = TokenServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def bq_service_account_key(bq_token_server):
    return service_account_key(bq_token_server.url + "/token")
