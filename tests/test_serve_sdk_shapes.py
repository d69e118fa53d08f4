"""Answers of `orchzip serve` parsed by the wallaroo SDK's own MLOps API models.

The SDK is not a dependency: point ORCHZIP_WALLAROO_REF at a throwaway copy, e.g.
    uv pip install --target /tmp/oz-wlref wallaroo==2026.1.3 --no-deps
    uv pip install --target /tmp/oz-wlref-deps attrs httpx python-dateutil
(ORCHZIP_WALLAROO_REF=/tmp/oz-wlref/wallaroo, ORCHZIP_WALLAROO_REF_DEPS=/tmp/oz-wlref-deps, the
defaults). The test is skipped when they are missing.
"""

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(300)

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.environ.get("ORCHZIP_WALLAROO_REF", "/tmp/oz-wlref/wallaroo")
REF_DEPS = os.environ.get("ORCHZIP_WALLAROO_REF_DEPS", "/tmp/oz-wlref-deps")


def parse_with_sdk(cases):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REF, REF_DEPS]))
    done = subprocess.run([sys.executable, os.path.join(HERE, "fixtures", "serve", "parse_with_sdk_models.py")],
                          input=json.dumps(cases), capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.skipif(not os.path.isdir(os.path.join(REF, "wallaroo_ml_ops_api_client")),
                    reason="no reference copy of the wallaroo SDK (ORCHZIP_WALLAROO_REF)")
def test_answers_parse_with_the_sdk_models(tmp_path):
    from orchzip.builder import build
    zip_path = build(os.path.join(HERE, "fixtures", "serve", "hello"), str(tmp_path / "dist")).zip_path
    server = Server(tmp_path / "state", tmp_path / "serve.log", "--no-env").start()
    try:
        post = lambda path, body: server.post(path, body).json()  # noqa: E731
        ws = post("/v1/api/workspaces/create", {"workspace_name": "sdk"})
        conn = post("/v1/api/connections/create", {"name": "c", "type": "HTTP", "details": {"k": "v"}})
        added = post("/v1/api/connections/add_to_workspace", {"workspace_id": ws["workspace_id"], "connection_id": conn["id"]})
        with open(zip_path, "rb") as fh:
            files = {"file": ("hello.zip", fh.read()), "metadata": (None, json.dumps({"workspace_id": ws["workspace_id"]}))}
        upload = server.post("/v1/api/orchestration/upload", files=files).json()
        orch = wait_for(lambda: post("/v1/api/orchestration/get_by_id", {"id": upload["id"]}),
                        lambda o: o["status"] == "ready")
        once = post("/v1/api/task/run_once", {"orch_id": orch["id"], "workspace_id": ws["workspace_id"], "json": {}})
        task = wait_for(lambda: post("/v1/api/task/get_by_id", {"id": once["id"]}), lambda t: t["status"] == "success")
        sched = post("/v1/api/task/run_scheduled", {"orch_id": orch["id"], "workspace_id": ws["workspace_id"],
                                                    "schedule": "0 0 * * *", "json": {"a": 1}})
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
             post("/v1/api/connections/create", {"name": "c", "type": "HTTP", "details": {}}), False),
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
             post("/v1/api/task/get_logs_for_run", {"id": task["last_runs"][0]["run_id"]}), False),
        ]
    finally:
        server.stop()
    assert parse_with_sdk(cases) == []
