"""The real wallaroo SDK from PyPI, as a notebook uses it, against a real `orchzip serve`.

The SDK is a test client only, never a dependency of orchzip: it gets its own Python 3.10
virtual environment (tests/support/wallaroo_sdk.py). The test is skipped only when that
environment cannot be built (no network at first use); any step of the flow that fails fails it.
The flow itself is tests/fixtures/sdk/notebook_flow.py, run in that environment.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.support.wallaroo_sdk import sdk_python  # noqa: F401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
HELLO = os.path.join(HERE, "fixtures", "serve", "hello")
FLOW = os.path.join(HERE, "fixtures", "sdk", "notebook_flow.py")
FLOW_SECONDS = 600
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] ")


def run_flow(sdk_python, server, zip_path, tmp_path):
    creds = tmp_path / "wallaroo-creds.json"
    creds.write_text(json.dumps({"token": server.token, "user_email": "notebook@example.com",
                                 "user_id": "notebook-user"}))
    # Nothing of a Wallaroo task's or instance's environment leaks into the notebook's.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WALLAROO", "ORCHZIP_TASK"))}
    env["WALLAROO_SDK_CREDENTIALS"] = str(creds)
    report = tmp_path / "report.json"
    done = subprocess.run([sdk_python, FLOW, server.url, zip_path, str(report)], env=env, capture_output=True,
                          text=True, timeout=FLOW_SECONDS, cwd=str(tmp_path))
    assert done.returncode == 0, f"{done.stderr[-4000:]}\n--- orchzip serve:\n{server.log()[-3000:]}"
    return json.loads(report.read_text())


def texts(lines):
    assert all(LOG_LINE.match(line) for line in lines), lines
    return [line.split(" ", 3)[3] for line in lines]


@pytest.mark.timeout(FLOW_SECONDS + 300)
def test_the_wallaroo_sdk_runs_the_notebook_flow_against_orchzip_serve(sdk_python, tmp_path):
    from orchzip.builder import build
    zip_path = build(HELLO, str(tmp_path / "dist")).zip_path
    server = Server(tmp_path / "state", tmp_path / "serve.log", "--no-env").start()
    try:
        seen = run_flow(sdk_python, server, zip_path, tmp_path)
    finally:
        server.stop()

    assert seen["steps"][-1] == "list_tasks"
    # The user's default workspace, made once; workspaces found, made on demand, a missing one refused.
    default = seen["default_workspace"]
    assert default["name"] == "notebook@example.com - Default Workspace" and default["again_id"] == default["id"]
    assert seen["workspace"]["name"] == "notebook-ws" and seen["workspace"]["again_id"] == seen["workspace"]["id"]
    assert "create_if_not_exist" in seen["missing_workspace_error"]
    assert "<td>notebook-ws</td>" in seen["workspaces_html"]
    assert seen["workspace_connections"] == ["notebook-conn"] and "notebook-conn" in seen["connection_html"]
    assert "notebook-ws" in seen["connections_html"]
    # The orchestration: uploaded, packaged, read over GraphQL, shown with its workspace's name.
    orch = seen["orchestration"]
    assert seen["orchestration_status"] == "ready"
    assert orch["name"] == "hello-orch" and orch["file_name"] == "hello.zip" and re.fullmatch(r"[0-9a-f]{64}", orch["sha"])
    assert orch["workspace_id"] == seen["workspace"]["id"]
    assert "<td>Workspace Name</td><td>notebook-ws</td>" in seen["orchestration_html"]
    assert seen["orchestration_ids"] == [orch["id"]]
    assert f"{orch['sha'][:6]}...{orch['sha'][-6:]}" in seen["orchestrations_html"]
    # run_once: the task is started and stays so; its run has the outcome.
    task = seen["task"]
    assert task["status"] == "started" and task["type"] == "Oneshot" and task["name"] == "hello-once"
    assert task["input_data"] == {"greeting": "hi"} and seen["run_status"] == "success"
    assert "<td>Type</td><td>Temporary Run</td>" in seen["task_html"]
    assert "<td>Last Run Status</td><td>success</td>" in seen["task_html"]
    assert "<td>Status</td><td>success</td>" in seen["run_html"] and "success" in seen["runs_html"]
    assert seen["failed_run_status"] == "failure"
    assert "failing on purpose: on purpose" in texts(seen["failed_logs"])
    # Logs in Wallaroo's form, with its framing lines, shown by the SDK.
    lines = texts(seen["logs"])
    assert lines[0] == "WALLAROO: Setting up task run..." and lines[-1] == "Task run complete. Status: success"
    assert "hello from the task, in_task=True, args=[('greeting', 'hi')]" in lines
    assert texts(seen["logs_tail"]) == [lines[-1]]
    assert "hello from the task" in seen["logs_html"] and "stdout F" not in seen["logs_html"]
    # run_scheduled, kill, list_tasks.
    assert seen["scheduled_status"] == "started" and seen["scheduled_type"] == "CronJob"
    assert "Scheduled Run" in seen["scheduled_html"] and "*/5 * * * *" in seen["scheduled_html"]
    assert seen["paused_status"] == "paused" and seen["resumed_status"] == "started"
    assert seen["kill_status"] in ("pending_kill", "killed") and seen["killed_status"] == "killed"
    assert task["id"] in seen["active_task_ids"] and seen["killed_task_ids"] and \
        not set(seen["killed_task_ids"]) & set(seen["active_task_ids"])
    # run_continuously: a NetworkService task, its logs flushed as written, killed on demand.
    assert seen["service_status"] == "started" and seen["service_type"] == "NetworkService"
    assert "tick 1" in texts(seen["service_logs"]) and "Continuous Run" in seen["service_html"]
    assert seen["service_killed_status"] == "killed"
    assert task["id"] in seen["orchestration_task_ids"] and len(seen["orchestration_task_ids"]) == 4
    assert seen["by_id_status"] == "started" and "hello-once" in seen["tasks_html"]
