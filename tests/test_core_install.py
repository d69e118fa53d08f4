"""`pip install orchzip` without extras builds, inspects and ships; what needs an extra says which."""

import os
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server  # noqa: E402

HELLO = os.path.join(REPO, "tests", "fixtures", "serve", "hello")
RUN_PACKAGES = ("pyarrow", "pandas", "numpy", "duckdb", "onnxruntime", "psutil", "starlette", "uvicorn", "jinja2")


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    """A fresh clone installed with `pip install -e .` (no extras) in a venv of its own."""
    root = tmp_path_factory.mktemp("core")
    clone = root / "clone"
    subprocess.run(["git", "clone", "-q", REPO, str(clone)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    pip = subprocess.run([str(root / "venv" / "bin" / "pip"), "install", "-q", "-e", str(clone)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return root


def orchzip(core, *argv, env=None):
    full_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    full_env.update(ORCHZIP_STATE_DIR=str(core / "state"), **(env or {}))
    return subprocess.run([str(core / "venv" / "bin" / "orchzip"), *argv], capture_output=True, text=True,
                          timeout=300, env=full_env, cwd=str(core))


@pytest.mark.timeout(900)
def test_the_core_install_has_no_run_or_serve_packages(core):
    python = str(core / "venv" / "bin" / "python")
    code = "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    found = subprocess.run([python, "-c", code, *RUN_PACKAGES], capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() == "[]", found.stdout + found.stderr


@pytest.mark.timeout(900)
def test_the_core_install_builds_inspects_inits_and_completes(core):
    built = orchzip(core, "build", HELLO, "-o", str(core / "dist"), "--json")
    assert built.returncode == 0, built.stderr
    assert orchzip(core, "inspect", str(core / "dist" / "hello.zip")).returncode == 0
    assert orchzip(core, "init", str(core / "shop")).returncode == 0
    assert "orchzip" in orchzip(core, "completion", "bash").stdout
    assert orchzip(core, "--help").returncode == 0 and orchzip(core, "schedule", "--help").returncode == 0


@pytest.mark.timeout(900)
@pytest.mark.parametrize("argv, extra, module", [
    (["run", HELLO], "run", "psutil"),
    (["quickstart"], "run", None),
    (["serve"], "serve", "starlette"),
    (["ui"], "serve", "starlette"),
    (["tasks", "list"], "run", None),
])
def test_a_command_whose_extra_is_missing_names_it_in_one_line(core, argv, extra, module):
    done = orchzip(core, *argv)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"orchzip {argv[0]} needs the '{extra}' extra" in done.stderr
    assert f"pip install 'orchzip[{extra}]'" in done.stderr
    if module:
        assert f"({module} is not installed)" in done.stderr


@pytest.mark.timeout(900)
def test_the_core_install_uploads_and_applies_to_a_real_serve(core, tmp_path):
    server = Server(tmp_path / "serve-state", tmp_path / "serve.log", "--no-env").start()
    try:
        env = {"WALLAROO_URL": server.url, "WALLAROO_TOKEN": server.token}
        workspace = server.post("/v1/api/workspaces/create", {"workspace_name": "core"}).json()["workspace_id"]
        uploaded = orchzip(core, "upload", HELLO, "--workspace-id", str(workspace), "--wait", env=env)
        assert uploaded.returncode == 0, uploaded.stderr
        ran = orchzip(core, "remote", "run-once", uploaded.stdout.strip()[:8], "--wait", env=env)
        assert ran.returncode == 0 and "success" in ran.stdout, ran.stderr
        (tmp_path / "proj").mkdir()
        (tmp_path / "proj" / "orchzip.yaml").write_text(
            f"workspaces: [core]\norchestrations:\n  hello: {{path: {HELLO}, workspace: core}}\n"
            "tasks:\n  nightly: {orchestration: hello, schedule: '0 3 * * *'}\n")
        applied = orchzip(core, "apply", "--remote", "-f", str(tmp_path / "proj" / "orchzip.yaml"), env=env)
        assert applied.returncode == 0 and "+ task nightly" in applied.stdout, applied.stderr
        listed = orchzip(core, "remote", "tasks", "list", "--kind", "scheduled", env=env)
        assert "nightly" in listed.stdout, listed.stderr
    finally:
        server.stop()
