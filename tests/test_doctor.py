"""`orchzip doctor`: one line per check with its fix, against real loopback servers and PyPI."""

import functools
import http.server
import json
import os
import socket
import threading

import pytest

UNREACHABLE_INDEX = "http://127.0.0.1:9/simple"


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on loopback; yields its URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed when this returns: nothing listens there


def create(cli, name, kind, details):
    result = cli("connections", "create", name, "--type", kind, "--details", json.dumps(details))
    assert result.code == 0, result


@pytest.mark.timeout(300)
def test_doctor_checks_each_connection_and_says_how_to_fix_what_fails(orchzip_cli, tmp_path, http_server):
    cache = tmp_path / "envs"
    (cache / "py310-wallaroo2026.1.3-0123").mkdir(parents=True)
    (cache / "py310-wallaroo2026.1.3-0123" / "blob").write_bytes(b"x" * 4096)
    env = {"ORCHZIP_ENV_CACHE": str(cache), "SECRET_HOST": http_server}
    cli = functools.partial(orchzip_cli, env=env, timeout=240)
    dead = f"http://user:hunter2@127.0.0.1:{closed_port()}/x?token=abc"
    create(cli, "api", "HTTP", {"host": "${SECRET_HOST}"})
    create(cli, "gone", "HTTP", {"host": dead})
    create(cli, "results", "DUCKDB", {"path": str(tmp_path / "out.duckdb"), "table": "t"})
    create(cli, "nowhere", "FILE", {"path": str(tmp_path / "missing" / "in.parquet")})

    result = cli("doctor", "--json")
    assert result.code == 1, result  # something failed
    checks = {c["name"]: c for c in result.json()["checks"]}
    assert checks["python"]["status"] == "ok" and checks["python"]["version"].startswith("3.10.")
    assert checks["uv"]["status"] == "ok"
    assert checks["cache"]["environments"] == 1 and checks["cache"]["bytes"] >= 4096
    assert checks["wallaroo"]["version"] == "2026.1.3" and "pandas==2.2.0" in checks["wallaroo"]["pins"]
    assert checks["connection api"]["status"] == "ok"
    assert checks["connection results"]["status"] == "ok"
    for name in ("connection gone", "connection nowhere"):
        assert checks[name]["status"] == "fail" and checks[name]["fix"], checks[name]

    text = cli("doctor")
    lines = text.out.splitlines()
    assert text.code == 1 and text.err == ""
    assert "ok    wallaroo: target wallaroo 2026.1.3: pins pandas==2.2.0, pyarrow==14.0.1, numpy==1.26.0" in text.out
    gone = next(line for line in lines if "connection gone" in line)
    assert gone.startswith("FAIL  connection gone: HTTP: 127.0.0.1:") and "; fix: start the server at" in gone
    assert "hunter2" not in text.out + result.out and "token=abc" not in text.out + result.out
    assert http_server.split(":")[-1] in next(line for line in lines if "connection api" in line)


@pytest.mark.timeout(120)
def test_doctor_says_when_the_index_cannot_be_reached_and_nothing_is_cached(orchzip_cli, tmp_path, state_dir):
    env = {"ORCHZIP_ENV_CACHE": str(tmp_path / "envs"), "UV_DEFAULT_INDEX": UNREACHABLE_INDEX}
    result = orchzip_cli("doctor", "--wallaroo-version", "2024.1.0", env=env)
    assert result.code == 1, result
    assert "Traceback" not in result.err
    lines = result.out.splitlines()
    assert any(line.startswith(f"warn  index: package index {UNREACHABLE_INDEX} not reachable (") for line in lines)
    assert ("FAIL  wallaroo: target wallaroo 2024.1.0: its pins are not cached and the index cannot be reached; "
            "fix: connect once") in result.out
    assert "no connections to check" in result.out
    assert not os.path.exists(state_dir)  # a check creates no state
