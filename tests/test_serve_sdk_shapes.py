"""Answers of `orchzip serve` parsed by the wallaroo SDK's own MLOps API models.

The models are the real SDK's, from its cached test environment (tests/support/wallaroo_sdk.py);
the SDK is never a dependency of orchzip. Skipped only when that environment cannot be built.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.support.wallaroo_sdk import sdk_python, site_packages  # noqa: F401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, ended, wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(600)

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_with_sdk(python, cases):
    # The generated client package imports on its own; the SDK's __init__ (and its imports) not needed.
    env = dict(os.environ, PYTHONPATH=os.path.join(site_packages(python), "wallaroo"))
    done = subprocess.run([python, os.path.join(HERE, "fixtures", "serve", "parse_with_sdk_models.py")],
                          input=json.dumps(cases), capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_answers_parse_with_the_sdk_models(sdk_python, tmp_path):
    from orchzip.builder import build
    zip_path = build(os.path.join(HERE, "fixtures", "serve", "hello"), str(tmp_path / "dist")).zip_path
    server = Server(tmp_path / "state", tmp_path / "serve.log", "--no-env").start()
    try:
        post = lambda path, body: server.post(path, body).json()  # noqa: E731
        ws = post("/v1/api/workspaces/create", {"workspace_name": "sdk"})
        conn = post("/v1/api/connections/create", {"name": "c", "type": "HTTP", "details": {"host": "http://127.0.0.1:9/t.arrow"}})
        added = post("/v1/api/connections/add_to_workspace", {"workspace_id": ws["workspace_id"], "connection_id": conn["id"]})
        with open(zip_path, "rb") as fh:
            files = {"file": ("hello.zip", fh.read()), "metadata": (None, json.dumps({"workspace_id": ws["workspace_id"]}))}
        upload = server.post("/v1/api/orchestration/upload", files=files).json()
        orch = wait_for(lambda: post("/v1/api/orchestration/get_by_id", {"id": upload["id"]}),
                        lambda o: o["status"] == "ready")
        once = post("/v1/api/task/run_once", {"orch_id": orch["id"], "workspace_id": ws["workspace_id"], "json": {}})
        task = wait_for(lambda: post("/v1/api/task/get_by_id", {"id": once["id"]}), ended)
        run_id = task["last_runs"][0]["run_id"]
        sched = post("/v1/api/task/run_scheduled", {"orch_id": orch["id"], "workspace_id": ws["workspace_id"],
                                                    "schedule": "0 0 * * *", "json": {"a": 1}})
        paused = post("/v1/api/task/pause", {"id": sched["id"], "pause": True})
        killed = post("/v1/api/task/kill", {"id": sched["id"]})
        cases = [
            ("workspaces_create_response_200", "WorkspacesCreateResponse200", ws, False),
            ("workspaces_list_response_200", "WorkspacesListResponse200", post("/v1/api/workspaces/list", {}), False),
            ("connections_create_response_200", "ConnectionsCreateResponse200", conn, False),
            ("connections_add_to_workspace_response_200", "ConnectionsAddToWorkspaceResponse200", added, False),
            ("connections_get_response_200", "ConnectionsGetResponse200", post("/v1/api/connections/get", {"name": "c"}), False),
            ("connections_get_by_id_response_200", "ConnectionsGetByIdResponse200",
             post("/v1/api/connections/get_by_id", {"id": conn["id"]}), False),
            ("connections_list_response_200", "ConnectionsListResponse200", post("/v1/api/connections/list", {}), False),
            ("connections_create_response_409", "ConnectionsCreateResponse409",
             post("/v1/api/connections/create", {"name": "c", "type": "HTTP", "details": {"host": "http://127.0.0.1:9/t.arrow"}}), False),
            ("orchestration_upload_response_202", "OrchestrationUploadResponse202", upload, False),
            ("orchestration", "Orchestration", orch, False),
            ("orchestration", "Orchestration", post("/v1/api/orchestration/list", {"workspace_id": ws["workspace_id"]}), True),
            ("oneshot_response_201", "OneshotResponse201", once, False),
            ("cron_job_response_201", "CronJobResponse201", sched, False),
            ("task_get_by_id_response_200", "TaskGetByIdResponse200", task, False),
            ("task", "Task", post("/v1/api/task/list", {}), True),
            ("kill_response_202", "KillResponse202", killed, False),
            ("list_task_runs_response_task_runs", "ListTaskRunsResponseTaskRuns",
             post("/v1/api/task/list_task_runs", {"task_id": once["id"]}), True),
            ("get_logs_for_run_response_200", "GetLogsForRunResponse200",
             post("/v1/api/task/get_logs_for_run", {"id": run_id}), False),
            ("list_all_orchestrations_response", "ListAllOrchestrationsResponse",
             post("/v1/api/orchestration/list_all", {"task_run_status": [], "workspace_ids": []}), False),
            ("get_run_details_response_200", "GetRunDetailsResponse200",
             post("/v1/api/task/get_run_details", {"task": once["id"], "pod_id": run_id}), False),
            ("get_tasks_by_orch_sha_response_200", "GetTasksByOrchShaResponse200",
             post("/v1/api/task/get_tasks_by_orch_sha", {"sha": orch["sha"]}), False),
            ("pause_response_202", "PauseResponse202", paused, False),
        ]
    finally:
        server.stop()
    assert parse_with_sdk(sdk_python, cases) == []
