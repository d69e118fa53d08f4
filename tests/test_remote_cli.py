"""`orchzip upload` and `orchzip remote ...` against a real `orchzip serve` process."""

import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, free_port, orchzip, wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(300)

HELLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve", "hello")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("remote") / "state"
    srv = Server(state, state.parent / "serve.log", "--no-env").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client_dir(tmp_path_factory):
    """The state directory of the client side (orchzip needs one; the remote commands do not use it)."""
    return str(tmp_path_factory.mktemp("client") / "state")


@pytest.fixture
def remote(server, client_dir):
    def run(*argv, token=None, check=True, url=None):
        env = {"WALLAROO_URL": url or server.url, "WALLAROO_TOKEN": token or server.token}
        return orchzip(client_dir, *argv, env=env, check=check)
    return run


@pytest.fixture(scope="module")
def workspace_id(server):
    return server.post("/v1/api/workspaces/create", {"workspace_name": "cli"}).json()["workspace_id"]


def test_upload_run_once_logs(remote, workspace_id, tmp_path):
    from orchzip.builder import build
    zip_path = build(HELLO, str(tmp_path)).zip_path
    uploaded = remote("upload", zip_path, "--workspace-id", str(workspace_id), "--name", "hello", "--wait")
    orch_id = uploaded.stdout.strip()
    # The statuses seen depend on how fast packaging is (a cached environment is ready at once).
    assert len(orch_id) == 36 and uploaded.stderr.rstrip().splitlines()[-1].strip().startswith("ready")
    ran = remote("remote", "run-once", orch_id, "--arg", "who=cli", "--wait")
    assert "task " in ran.stdout and "success" in ran.stdout
    run_id = ran.stdout.split("run ")[1].split()[0]
    logs = remote("remote", "logs", run_id)
    assert "hello from the task, in_task=True, args=[('who', 'cli')]" in logs.stdout
    task_id = ran.stdout.split()[1]
    last = remote("remote", "logs", task_id, "--task", "--lines", "2").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in last] == ["done", "Task run complete. Status: success"]
    raw = remote("remote", "logs", task_id, "--task", "--lines", "1", "--raw").stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout F Task run complete\. Status: success\n", raw), raw
    runs = json.loads(remote("remote", "runs", task_id, "--json").stdout)
    assert [r["status"] for r in runs] == ["success"]
    task = json.loads(remote("remote", "task", task_id, "--json").stdout)
    assert task["status"] == "started" and task["last_runs"][0]["status"] == "success"
    assert task["input_data"] == {"who": "cli"}
    assert task_id in remote("remote", "tasks").stdout
    assert orch_id in remote("remote", "orchestrations", "--workspace-id", str(workspace_id)).stdout


def test_upload_of_a_folder_builds_it_first_and_a_failing_task_exits_1(remote, workspace_id):
    orch_id = remote("upload", HELLO, "--workspace-id", str(workspace_id), "--wait").stdout.strip()
    failed = remote("remote", "run-once", orch_id, "--args", '{"fail": "on purpose"}', "--wait", check=False)
    assert failed.returncode == 1 and "failed" in failed.stdout


def test_schedule_then_kill(remote, workspace_id):
    orch_id = remote("upload", HELLO, "--workspace-id", str(workspace_id), "--wait").stdout.strip()
    task_id = remote("remote", "schedule", orch_id, "--schedule", "0 3 * * *").stdout.strip()
    killed = remote("remote", "kill", task_id)
    assert f"task {task_id}" in killed.stdout
    task = wait_for(lambda: json.loads(remote("remote", "task", task_id, "--json").stdout),
                    lambda t: t["status"] == "killed", timeout=30)
    assert task["killed"] is True


def test_connections_commands_round_trip(remote, workspace_id):
    details = {"project_id": "p", "private_key": "TOPSECRETKEY", "dataset": "d", "table": "t"}
    created = remote("remote", "connections", "create", "bq", "--type", "BIGQUERY", "--details", json.dumps(details))
    assert created.stdout.strip()
    remote("remote", "connections", "add-to-workspace", "bq", "--workspace-id", str(workspace_id))
    got = remote("remote", "connections", "get", "bq")
    assert "workspaces: cli" in got.stdout and "TOPSECRETKEY" not in got.stdout and '"dataset": "d"' in got.stdout
    listed = json.loads(remote("remote", "connections", "list", "--workspace-id", str(workspace_id), "--json").stdout)
    assert [c["name"] for c in listed] == ["bq"]
    dup = remote("remote", "connections", "create", "bq", "--type", "BIGQUERY", check=False)
    assert dup.returncode == 1 and "409 Conflict" in dup.stderr and "name is taken" in dup.stderr
    remote("remote", "connections", "delete", "bq")
    missing = remote("remote", "connections", "get", "bq", check=False)
    assert missing.returncode == 1 and "404 Not Found" in missing.stderr and "WALLAROO_URL" in missing.stderr


def test_a_wrong_token_is_one_line_about_credentials_without_the_token(remote):
    wrong = "sekret-wrong-token-value"
    result = remote("remote", "tasks", token=wrong, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "401 Unauthorized" in lines[0] and "check your credentials" in lines[0]
    assert wrong not in result.stderr + result.stdout


def test_an_unreachable_instance_says_what_to_check(remote, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = remote("remote", "tasks", "--retries", "1", url=url, check=False)
    assert result.returncode == 1
    assert "cannot reach" in result.stderr and "connection refused" in result.stderr and "2 tries" in result.stderr


def test_missing_url_or_credentials_are_refused_before_any_request(client_dir):
    env = {"WALLAROO_URL": "", "WALLAROO_TOKEN": "", "WALLAROO_USER": "", "WALLAROO_PASSWORD": ""}
    result = orchzip(client_dir, "remote", "tasks", env=env, check=False)
    assert result.returncode == 1 and "WALLAROO_URL" in result.stderr
    result = orchzip(client_dir, "remote", "tasks", "--url", "http://127.0.0.1:1", env=env, check=False)
    assert result.returncode == 1 and "no credentials" in result.stderr and "WALLAROO_TOKEN" in result.stderr


def test_remote_tasks_take_the_local_verbs_and_id_prefixes(remote, workspace_id, server):
    orch_id = remote("upload", HELLO, "--workspace-id", str(workspace_id), "--wait").stdout.strip()
    ran = remote("remote", "run-once", orch_id[:8], "--arg", "who=prefix", "--wait")
    task_id = ran.stdout.split()[1]
    prefix = task_id[:8]
    listed = json.loads(remote("remote", "tasks", "list", "--kind", "run_once", "--json").stdout)
    assert task_id in [t["id"] for t in listed] and {t["kind"] for t in listed} == {"run_once"}
    shown = json.loads(remote("remote", "tasks", "show", prefix, "--json").stdout)
    assert shown["id"] == task_id and shown["input_data"] == {"who": "prefix"}
    runs = json.loads(remote("remote", "tasks", "runs", prefix, "--json").stdout)
    assert [r["status"] for r in runs] == ["success"]
    logs = remote("remote", "tasks", "logs", prefix, "--run", runs[0]["run_id"][:8]).stdout
    assert "hello from the task, in_task=True, args=[('who', 'prefix')]" in logs
    # Global options before or after the verb; --json anywhere.
    env_less = remote("remote", "tasks", "--url", server.url, "show", prefix, "--json")
    assert json.loads(env_less.stdout)["id"] == task_id

    scheduled = remote("remote", "schedule", orch_id[:8], "--cron", "0 3 * * *").stdout.strip()
    continuous = remote("remote", "run-continuously", orch_id[:8], "--arg", "ticks=100000").stdout.strip()
    assert f"task {scheduled} paused" in remote("remote", "tasks", "pause", scheduled[:8]).stdout
    assert f"task {scheduled} started" in remote("remote", "tasks", "resume", scheduled[:8]).stdout
    kinds = {t["id"]: t["kind"] for t in json.loads(remote("remote", "tasks", "--json").stdout)}
    assert kinds[scheduled] == "scheduled" and kinds[continuous] == "continuous"
    for killed in (scheduled, continuous):
        assert f"task {killed}" in remote("remote", "tasks", "kill", killed[:8]).stdout

    missing = remote("remote", "tasks", "show", "zzzz", check=False)
    assert missing.returncode == 2 and "no task with an id starting 'zzzz' on http://127.0.0.1:" in missing.stderr
    assert "orchzip remote tasks list" in missing.stderr
    no_cron = remote("remote", "schedule", orch_id, check=False)
    assert no_cron.returncode == 2 and "needs --cron" in no_cron.stderr
