"""`orchzip serve` across restarts, with real task environments (no --no-env)."""

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, ended, outcome, texts, wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(600)

HELLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve", "hello")


def _task(server, task_id):
    return server.post("/v1/api/task/get_by_id", {"id": task_id}).json()


def _upload_ready(server, zip_path, workspace_id):
    with open(zip_path, "rb") as fh:
        files = {"file": ("hello.zip", fh.read(), "application/zip"),
                 "metadata": (None, b'{"workspace_id": %d}' % workspace_id, "application/json")}
    orch_id = server.post("/v1/api/orchestration/upload", files=files).json()["id"]
    seen = set()

    def get():
        orch = server.post("/v1/api/orchestration/get_by_id", {"id": orch_id}).json()
        seen.add(orch["status"])
        return orch

    orch = wait_for(get, lambda o: o["status"] in ("ready", "error"), timeout=400, interval=0.05)
    assert orch["status"] == "ready", orch
    return orch_id, seen


def test_packaging_builds_the_task_environment_and_state_survives_restarts(tmp_path):
    from orchzip.builder import build
    zip_path = build(HELLO, str(tmp_path / "dist")).zip_path
    state = tmp_path / "state"
    server = Server(state, tmp_path / "serve.log").start()
    try:
        token = server.token
        workspace_id = server.post("/v1/api/workspaces/create", {"workspace_name": "w"}).json()["workspace_id"]
        server.post("/v1/api/connections/create", {"name": "kept", "type": "HTTP", "details": {"url": "http://127.0.0.1:9/x.arrow"}})
        orch_id, seen = _upload_ready(server, zip_path, workspace_id)
        assert seen <= {"pending_packaging", "packaging", "ready"}
        done_id = server.post("/v1/api/task/run_once", {"orch_id": orch_id, "workspace_id": workspace_id,
                                                        "json": {"n": 1}}).json()["id"]
        done = wait_for(lambda: _task(server, done_id), ended, timeout=120)
        assert outcome(done) == "success", server.log()[-3000:]
        run_id = done["last_runs"][0]["run_id"]
        logs = texts(server.post("/v1/api/task/get_logs_for_run", {"id": run_id}).json()["logs"])
        assert any("Python 3.10" in line for line in logs[:3]) and "hello from the task, in_task=True, args=[('n', 1)]" in logs
        # A run going when the server stops is killed and recorded, not left behind.
        long_id = server.post("/v1/api/task/run_once", {"orch_id": orch_id, "workspace_id": workspace_id,
                                                        "json": {"ticks": 600, "tick_seconds": 0.1}}).json()["id"]
        wait_for(lambda: _task(server, long_id)["last_runs"], bool, timeout=60)
    finally:
        server.stop()
    # uvicorn shuts down gracefully, then ends by the signal it caught.
    assert server.process.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in server.log()

    server = Server(state, tmp_path / "serve2.log").start()
    try:
        assert server.token == token
        assert server.post("/v1/api/orchestration/get_by_id", {"id": orch_id}).json()["status"] == "ready"
        assert server.post("/v1/api/connections/get", {"name": "kept"}).json()["details"] == {"url": "http://127.0.0.1:9/x.arrow"}
        assert outcome(_task(server, done_id)) == "success"
        assert "done" in texts(server.post("/v1/api/task/get_logs_for_run", {"id": run_id}).json()["logs"])
        stopped = _task(server, long_id)
        assert stopped["status"] == "killed" and stopped["last_runs"][0]["status"] == "killed"
        from orchzip.runtime.store import Store
        assert Store(str(state)).get_run(stopped["last_runs"][0]["run_id"])["error"] == "orchzip serve stopped"
        # A server killed outright: its run is marked lost at the next start, its process killed.
        lost_id = server.post("/v1/api/task/run_once", {"orch_id": orch_id, "workspace_id": workspace_id,
                                                        "json": {"ticks": 600, "tick_seconds": 0.1}}).json()["id"]
        lost_run = wait_for(lambda: _task(server, lost_id)["last_runs"], bool, timeout=60)[0]["run_id"]
        wait_for(lambda: texts(server.post("/v1/api/task/get_logs_for_run", {"id": lost_run}).json()["logs"]),
                 lambda lines: "tick 1" in lines, timeout=60)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
    finally:
        server.stop()

    from orchzip.runtime.store import Store
    pid = Store(str(state)).get_run(_last_run_id(state, lost_id))["pid"]
    server = Server(state, tmp_path / "serve3.log").start()
    try:
        lost = _task(server, lost_id)
        assert lost["status"] == "started" and lost["last_runs"][0]["status"] == "failure"
        assert not _alive(pid)
    finally:
        server.stop()


def _last_run_id(state, task_id):
    from orchzip.runtime.store import Store
    return Store(str(state)).list_runs(task_id=task_id, limit=1)[0]["id"]


def _alive(pid):
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
