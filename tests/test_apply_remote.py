"""`orchzip apply --remote`: a project file applied to a real `orchzip serve` over the MLOps API."""

import json
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, orchzip, wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(300)

HELLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve", "hello")

PROJECT = """\
version: 1
workspaces: [shop]
connections:
  inputs:
    type: FILE
    details: {path: data/in.parquet}
    workspaces: [shop]
  api:
    type: HTTP
    details: {url: "https://example.com/prices", headers: {Authorization: "Bearer ${SHOP_TOKEN}"}}
orchestrations:
  hello: {path: hello, workspace: shop}
tasks:
  greet: {orchestration: hello, args: {who: apply}, timeout: 60}
  watcher: {orchestration: hello, continuously: true, args: {ticks: 100000}}
  nightly:
    orchestration: hello
    schedule: "0 3 * * *"
    tz: Europe/Berlin
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("apply-remote") / "state"
    srv = Server(state, state.parent / "serve.log", "--no-env").start()
    yield srv
    srv.stop()


@pytest.fixture
def project(tmp_path):
    shutil.copytree(HELLO, tmp_path / "hello")
    (tmp_path / "orchzip.yaml").write_text(PROJECT)
    return tmp_path


@pytest.fixture
def apply(server, project, tmp_path_factory):
    client_state = str(tmp_path_factory.mktemp("client") / "state")

    def run(*argv, check=True, note="first"):
        env = {"WALLAROO_URL": server.url, "WALLAROO_TOKEN": server.token, "SHOP_TOKEN": note}
        return orchzip(client_state, "apply", "--remote", "-f", str(project / "orchzip.yaml"), *argv,
                       env=env, check=check)
    return run


def _tasks(server, name=None):
    tasks = server.post("/v1/api/task/list", {}).json()
    return [t for t in tasks if name is None or t["name"] == name]


def _workspaces(server):
    return {w["name"]: w["id"] for w in server.post("/v1/api/workspaces/list", {}).json()["workspaces"]}


def test_apply_remote_plans_uploads_starts_and_then_changes_nothing(server, project, apply):
    dry = apply("--dry-run")
    assert "+ workspace shop" in dry.stdout and "+ connection inputs (FILE)" in dry.stdout
    assert "+ connection api (HTTP)" in dry.stdout and "first" not in dry.stdout + dry.stderr
    assert "+ orchestration hello" in dry.stdout and "+ task greet (run-once)" in dry.stdout
    assert "+ task nightly (schedule '0 3 * * *')" in dry.stdout and "+ task watcher (continuous)" in dry.stdout and "dry run: nothing changed" in dry.stdout
    assert "task nightly: tz shapes local runs only" in dry.stderr
    assert "shop" not in _workspaces(server), "a dry run created a workspace"

    applied = json.loads(apply("--json").stdout)
    assert applied["create"] == 7 and set(applied["started"]) == {"greet", "nightly", "watcher"}
    greet = wait_for(lambda: server.post("/v1/api/task/get_by_id", {"id": applied["started"]["greet"]}).json(),
                     lambda t: t["last_runs"] and t["last_runs"][0]["status"] == "success")
    logs = server.post("/v1/api/task/get_logs_for_run", {"id": greet["last_runs"][0]["run_id"]}).json()["logs"]
    assert any("args=[('who', 'apply')]" in line for line in logs)
    connection = server.post("/v1/api/connections/get", {"name": "inputs"}).json()
    assert connection["details"] == {"path": str(project / "data" / "in.parquet")}
    assert connection["workspace_names"] == ["shop"]
    api = server.post("/v1/api/connections/get", {"name": "api"}).json()
    assert api["details"]["headers"] == {"Authorization": "Bearer first"} and api["workspace_names"] == []
    nightly = server.post("/v1/api/task/get_by_id", {"id": applied["started"]["nightly"]}).json()
    assert nightly["run_type"] == "CronJob" and nightly["schedule"] == "0 3 * * *"
    watcher = server.post("/v1/api/task/get_by_id", {"id": applied["started"]["watcher"]}).json()
    assert watcher["run_type"] == "NetworkService" and watcher["input_data"] == {"ticks": 100000}

    again = apply()
    assert "nothing to change" in again.stdout
    assert len(_tasks(server)) == 3, "applying twice started tasks again"

    # A changed main.py uploads the orchestration again and restarts its tasks on the new zip.
    with open(project / "hello" / "main.py", "a") as fh:
        fh.write("print('version 2', flush=True)\n")
    changed = apply()
    assert "~ orchestration hello: sha changed" in changed.stdout
    assert "~ task greet: sha changed" in changed.stdout and "~ task nightly: sha changed" in changed.stdout
    assert "~ task watcher: sha changed" in changed.stdout
    old_nightly = server.post("/v1/api/task/get_by_id", {"id": applied["started"]["nightly"]}).json()
    assert old_nightly["status"] in ("pending_kill", "killed")
    live = [t for t in _tasks(server, "nightly") if t["status"] not in ("pending_kill", "killed")]
    assert len(live) == 1 and live[0]["id"] != nightly["id"]
    assert "nothing to change" in apply().stdout

    # A changed ${VAR} re-creates the connection; a task dropped from the file is killed.
    (project / "orchzip.yaml").write_text(PROJECT.split("  nightly:")[0])
    dropped = apply(note="second")
    assert "~ connection api: details changed" in dropped.stdout and "- task nightly" in dropped.stdout
    assert server.post("/v1/api/connections/get", {"name": "api"}).json()["details"]["headers"] == {
        "Authorization": "Bearer second"}
    assert all(t["status"] in ("pending_kill", "killed") for t in _tasks(server, "nightly"))
    assert "nothing to change" in apply(note="second").stdout


def test_a_missing_variable_or_workspace_is_one_line_and_changes_nothing(server, project, apply):
    before = _workspaces(server)
    env = {"WALLAROO_URL": server.url, "WALLAROO_TOKEN": server.token}
    env_without = {k: v for k, v in os.environ.items() if k != "SHOP_TOKEN"}
    import subprocess
    failed = subprocess.run([sys.executable, "-m", "orchzip", "apply", "--remote", "-f", str(project / "orchzip.yaml")],
                            capture_output=True, text=True, timeout=120, env=dict(env_without, **env))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.count("\n") == 1 and "connection 'api'" in failed.stderr and "SHOP_TOKEN" in failed.stderr
    (project / "orchzip.yaml").write_text(PROJECT.replace("{path: hello, workspace: shop}", "{path: hello}"))
    nowhere = apply(check=False)
    assert nowhere.returncode == 2 and "orchestrations.hello: apply --remote needs its workspace" in nowhere.stderr
    assert _workspaces(server) == before


def test_remote_flags_without_remote_are_refused(project, tmp_path):
    result = orchzip(str(tmp_path / "state"), "apply", "-f", str(project / "orchzip.yaml"), "--url",
                     "http://127.0.0.1:9", check=False)
    assert result.returncode == 2 and "--url names a Wallaroo instance, which only apply --remote uses" in result.stderr
