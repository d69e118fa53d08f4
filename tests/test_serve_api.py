"""`orchzip serve` as a client sees it: a real server subprocess on a free loopback port.

Raw HTTP as the Wallaroo tutorials and the wallaroo SDK send it: JSON POSTs with the bearer
header, the multipart orchestration upload, pandas-records and Arrow inference.
"""

import concurrent.futures
import io
import json
import os
import re
import stat
import sys
import time
import zipfile

import numpy as np
import pyarrow as pa
import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, ended, orchzip, outcome, texts, wait_for  # noqa: E402

from conftest import RF_MODEL, TUTORIAL_DATA, XTEST_1K, reference_rows  # noqa: E402

pytestmark = pytest.mark.timeout(300)

HELLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve", "hello")
MAX_UPLOAD = 1_000_000
COMPLETE = "Task run complete. Status: {}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("serve") / "state"
    orchzip(str(state), "pipelines", "create", "housing", "--model", RF_MODEL)
    srv = Server(state, state.parent / "serve.log", "--no-env", "--max-upload-bytes", str(MAX_UPLOAD)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def workspace_id(server):
    return server.post("/v1/api/workspaces/create", {"workspace_name": "tests"}).json()["workspace_id"]


@pytest.fixture(scope="module")
def hello_zip(tmp_path_factory):
    from orchzip.builder import build
    return build(HELLO, str(tmp_path_factory.mktemp("dist"))).zip_path


def upload(server, zip_bytes, metadata, file_name="orch.zip"):
    """The multipart upload as the wallaroo SDK sends it: parts 'file' and 'metadata'."""
    files = [("file", (file_name, zip_bytes, "application/zip")),
             ("metadata", (None, json.dumps(metadata).encode(), "application/json"))]
    return server.post("/v1/api/orchestration/upload", files=files)


def ready_orchestration(server, zip_path, workspace_id):
    with open(zip_path, "rb") as fh:
        answer = upload(server, fh.read(), {"workspace_id": workspace_id, "name": "hello"}, "hello.zip")
    assert answer.status_code == 202, answer.text
    orch_id = answer.json()["id"]
    orch = wait_for(lambda: server.post("/v1/api/orchestration/get_by_id", {"id": orch_id}).json(),
                    lambda o: o["status"] in ("ready", "error"))
    assert orch["status"] == "ready", orch
    return orch


def run_once(server, orch, args, **fields):
    answer = server.post("/v1/api/task/run_once", {"orch_id": orch["id"], "workspace_id": orch["workspace_id"],
                                                   "json": args, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def task(server, task_id):
    return server.post("/v1/api/task/get_by_id", {"id": task_id}).json()


def logs(server, run_id, **fields):
    """The text of each line of a run's log (the API gives them in Wallaroo's form)."""
    answer = server.post("/v1/api/task/get_logs_for_run", {"id": run_id, **fields})
    assert answer.status_code == 200, answer.text
    return texts(answer.json()["logs"])


# -- authentication --------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer "}], ids=["none", "wrong", "basic", "empty"])
def test_requests_without_the_right_token_get_401(server, headers):
    for path in ("/v1/api/workspaces/list", "/v1/api/pipelines/infer/housing", "/v1/api/nothing/here"):
        answer = requests.post(server.url + path, json={}, headers=headers, timeout=10)
        assert answer.status_code == 401
        assert answer.json()["code"] == 401 and "token" in answer.json()["msg"]
        assert server.token not in answer.text


def test_token_is_kept_owner_only_and_shown_by_show_token(server):
    path = os.path.join(server.state_dir, "serve-token")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert orchzip(server.state_dir, "serve", "--show-token").stdout.strip() == server.token
    assert server.token not in server.log()


# -- the BigQuery tutorial's raw REST calls ----------------------------------------------------
def test_tutorial_connection_flow_with_raw_requests(server, workspace_id):
    # As the tutorial does it: requests.post with a JSON body and the bearer header.
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    details = {"type": "service_account", "project_id": "p", "private_key": "-----BEGIN PRIVATE KEY-----x",
               "dataset": "housing", "table": "inputs"}
    created = requests.post(f"{server.url}/v1/api/connections/create", headers=headers,
                            json={"name": "bq-tutorial", "type": "BIGQUERY", "details": details}).json()
    connection_id = created["id"]
    added = requests.post(f"{server.url}/v1/api/connections/add_to_workspace", headers=headers,
                          json={"workspace_id": workspace_id, "connection_id": connection_id})
    assert added.status_code == 200 and "id" in added.json()
    got = requests.post(f"{server.url}/v1/api/connections/get", headers=headers, json={"name": "bq-tutorial"}).json()
    assert got["id"] == connection_id and got["name"] == "bq-tutorial" and got["type"] == "BIGQUERY"
    assert got["details"] == details and got["workspace_names"] == ["tests"] and got["created_at"]
    by_id = server.post("/v1/api/connections/get_by_id", {"id": connection_id}).json()
    assert by_id["name"] == "bq-tutorial"
    listed = server.post("/v1/api/connections/list", {"workspace_id": workspace_id}).json()["connections"]
    assert [c["name"] for c in listed] == ["bq-tutorial"]
    again = requests.post(f"{server.url}/v1/api/connections/create", headers=headers,
                          json={"name": "bq-tutorial", "type": "BIGQUERY", "details": details})
    assert again.status_code == 409 and again.json()["code"] == 409


def test_connection_delete_and_remove_from_workspace(server, workspace_id):
    connection_id = server.post("/v1/api/connections/create", {"name": "tmp", "type": "ODBC", "details": {}}).json()["id"]
    server.post("/v1/api/connections/add_to_workspace", {"workspace_id": workspace_id, "connection_id": connection_id})
    gone = server.post("/v1/api/connections/remove_from_workspace",
                       {"workspace_id": workspace_id, "connection_id": connection_id})
    assert gone.status_code == 204
    assert server.post("/v1/api/connections/get", {"name": "tmp"}).json()["workspace_names"] == []
    assert server.post("/v1/api/connections/delete", {"name": "tmp"}).status_code == 204
    assert server.post("/v1/api/connections/get", {"name": "tmp"}).status_code == 404


# -- orchestrations and tasks ------------------------------------------------------------------
def test_upload_packaging_run_once_success_and_logs(server, workspace_id, hello_zip):
    orch = ready_orchestration(server, hello_zip, workspace_id)
    assert orch["file_name"] == "hello.zip" and orch["workspace_id"] == workspace_id and len(orch["sha"]) == 64
    listed = server.post("/v1/api/orchestration/list", {"workspace_id": workspace_id}).json()
    assert orch["id"] in [o["id"] for o in listed]
    task_id = run_once(server, orch, {"greeting": "hi"}, name="hello-once")
    done = wait_for(lambda: task(server, task_id), ended)
    # As on Wallaroo: the run-once task stays started, its run has the outcome.
    assert done["status"] == "started" and outcome(done) == "success" and done["run_type"] == "Oneshot"
    assert done["killed"] is False and done["name"] == "hello-once"
    assert done["input_data"] == {"greeting": "hi"} and done["workspace_id"] == workspace_id
    runs = server.post("/v1/api/task/list_task_runs", {"task_id": task_id}).json()
    assert [r["status"] for r in runs] == ["success"] and runs[0]["task"] == task_id
    lines = logs(server, runs[0]["run_id"])
    assert "hello from the task, in_task=True, args=[('greeting', 'hi')]" in lines and lines[-2] == "done"
    assert lines[0] == "WALLAROO: Setting up task run..." and lines[-1] == COMPLETE.format("success")
    assert logs(server, runs[0]["run_id"], lines=2) == ["done", COMPLETE.format("success")]
    raw = server.post("/v1/api/task/get_logs_for_run", {"id": runs[0]["run_id"]}).json()["logs"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] .*", line) for line in raw), raw
    assert task_id in [t["id"] for t in server.post("/v1/api/task/list", {"workspace_id": workspace_id}).json()]


def test_a_failing_task_is_failed_and_its_logs_say_why(server, workspace_id, hello_zip):
    orch = ready_orchestration(server, hello_zip, workspace_id)
    task_id = run_once(server, orch, {"fail": "bad input"})
    assert outcome(wait_for(lambda: task(server, task_id), ended)) == "failure"
    run = server.post("/v1/api/task/list_task_runs", {"task_id": task_id}).json()[0]
    assert run["status"] == "failure"
    assert "failing on purpose: bad input" in logs(server, run["run_id"])


def test_logs_are_served_while_the_task_runs_and_kill_stops_it(server, workspace_id, hello_zip):
    orch = ready_orchestration(server, hello_zip, workspace_id)
    task_id = run_once(server, orch, {"ticks": 200, "tick_seconds": 0.1})
    run_id = wait_for(lambda: task(server, task_id)["last_runs"], bool)[0]["run_id"]
    lines = wait_for(lambda: logs(server, run_id), lambda ls: "tick 2" in ls)
    assert task(server, task_id)["status"] == "started" and "done" not in lines
    killed = server.post("/v1/api/task/kill", {"id": task_id})
    assert killed.status_code == 202 and killed.json()["status"] in ("pending_kill", "killed")
    assert killed.json()["killed"] is (killed.json()["status"] == "killed")  # pending_kill: not killed yet
    final = wait_for(lambda: task(server, task_id), lambda t: t["status"] == "killed", timeout=30)
    assert final["status"] == "killed" and final["last_runs"][0]["status"] == "killed"
    again = server.post("/v1/api/task/kill", {"id": task_id})
    assert again.status_code == 409 and "already ended" in again.json()["msg"]


def test_a_task_past_its_timeout_is_timed_out(server, workspace_id, hello_zip):
    orch = ready_orchestration(server, hello_zip, workspace_id)
    task_id = run_once(server, orch, {"ticks": 100, "tick_seconds": 0.1}, timeout=1)
    assert outcome(wait_for(lambda: task(server, task_id), ended)) == "timed_out"


def test_run_scheduled_on_a_seconds_schedule_fires_and_kill_stops_it(server, workspace_id, hello_zip):
    orch = ready_orchestration(server, hello_zip, workspace_id)
    bad = server.post("/v1/api/task/run_scheduled", {"orch_id": orch["id"], "workspace_id": workspace_id,
                                                     "schedule": "every minute", "json": {}})
    assert bad.status_code == 422 and "schedule" in bad.json()["msg"], bad.text
    answer = server.post("/v1/api/task/run_scheduled", {"orch_id": orch["id"], "workspace_id": workspace_id,
                                                        "schedule": "*/1 * * * * *", "json": {"every": "second"}})
    assert answer.status_code == 201, answer.text
    task_id = answer.json()["id"]
    runs = wait_for(lambda: server.post("/v1/api/task/list_task_runs", {"task_id": task_id, "status": "success"}).json(),
                    lambda rs: len(rs) >= 2, timeout=60)
    assert "hello from the task, in_task=True, args=[('every', 'second')]" in logs(server, runs[0]["run_id"])
    assert server.post("/v1/api/task/kill", {"id": task_id}).status_code == 202
    final = wait_for(lambda: task(server, task_id), lambda t: t["status"] == "killed", timeout=30)
    count = len(server.post("/v1/api/task/list_task_runs", {"task_id": task_id}).json())
    time.sleep(2.5)
    assert len(server.post("/v1/api/task/list_task_runs", {"task_id": task_id}).json()) == count
    assert final["killed"] is True


def test_a_zip_without_main_py_ends_packaging_in_error_and_cannot_run(server, workspace_id):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("helper.py", "x = 1\n")
    orch_id = upload(server, buf.getvalue(), {"workspace_id": workspace_id}).json()["id"]
    orch = wait_for(lambda: server.post("/v1/api/orchestration/get_by_id", {"id": orch_id}).json(),
                    lambda o: o["status"] in ("ready", "error"))
    assert orch["status"] == "error" and "main.py" in orch["error"]
    refused = server.post("/v1/api/task/run_once", {"orch_id": orch_id, "workspace_id": workspace_id, "json": {}})
    assert refused.status_code == 409 and "main.py" in refused.json()["msg"]


# -- inference -------------------------------------------------------------------------------
def expected_predictions(rows):
    from orchzip_shim.models import OnnxModel
    batch = pa.RecordBatch.from_pylist(rows)
    return np.array(OnnxModel(RF_MODEL).infer_batch(batch).column("out.variable").to_pylist())[:, 0]


def test_inference_in_pandas_records_gives_the_models_predictions(server):
    rows = reference_rows()
    answer = server.post("/v1/api/pipelines/infer/housing-1/housing", data=json.dumps(rows),
                         headers={**server.headers, "Content-Type": "application/json; format=pandas-records"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    records = answer.json()
    assert len(records) == 1000 and set(records[0]) == {"time", "in", "out", "anomaly", "metadata"}
    assert abs(records[0]["time"] / 1000 - time.time()) < 60  # epoch milliseconds
    assert records[0]["in"]["tensor"] == rows[0]["tensor"] and records[0]["anomaly"] == {"count": 0}
    got = np.array([r["out"]["variable"][0] for r in records])
    np.testing.assert_allclose(got, expected_predictions(rows), rtol=1e-5)
    assert 100_000 < got.min() and got.max() < 10_000_000


def test_inference_flattened_as_the_sdk_asks(server):
    rows = reference_rows()[:3]
    answer = server.post("/v1/api/pipelines/infer/housing-7/housing?dataset[]=*&dataset.exclude[]=metadata"
                         "&dataset.separator=.", data=json.dumps(rows),
                         headers={**server.headers, "Content-Type": "application/json; format=pandas-records"})
    assert answer.status_code == 200, answer.text
    assert set(answer.json()[0]) == {"time", "in.tensor", "out.variable", "anomaly.count"}


def test_inference_in_arrow_gives_the_models_predictions(server):
    with open(os.path.join(TUTORIAL_DATA, "xtest-1k.arrow"), "rb") as fh:
        body = fh.read()
    answer = server.post("/v1/api/pipelines/infer/housing", data=body,
                         headers={**server.headers, "Content-Type": "application/vnd.apache.arrow.file"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/vnd.apache.arrow.file"
    table = pa.ipc.open_file(answer.content).read_all()
    assert table.num_rows == 1000 and table.schema.names == ["time", "in.tensor", "out.variable", "anomaly.count"]
    got = np.array(table.column("out.variable").to_pylist())[:, 0]
    np.testing.assert_allclose(got, expected_predictions(reference_rows(XTEST_1K)), rtol=1e-5)


# -- malformed requests: each its 4xx, always a JSON error body ----------------------------------
def _zip(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


MALFORMED = [
    ("bad-json", "/v1/api/connections/create", {"data": b'{"name": '}, 400, "not valid JSON"),
    ("json-list", "/v1/api/connections/create", {"data": b"[1, 2]"}, 400, "JSON object"),
    ("missing-field", "/v1/api/connections/create", {"json": {"type": "ODBC"}}, 422, "'name'"),
    ("mistyped-field", "/v1/api/connections/create", {"json": {"name": 5, "type": "ODBC"}}, 422, "'name'"),
    ("mistyped-details", "/v1/api/connections/create", {"json": {"name": "x", "type": "T", "details": [1]}}, 422,
     "'details'"),
    ("unknown-connection", "/v1/api/connections/get", {"json": {"name": "nope"}}, 404, "nope"),
    ("unknown-connection-id", "/v1/api/connections/get_by_id", {"json": {"id": "999"}}, 404, "999"),
    ("unknown-workspace", "/v1/api/connections/add_to_workspace", {"json": {"workspace_id": 999, "connection_id": "1"}},
     404, "999"),
    ("unknown-orchestration", "/v1/api/orchestration/get_by_id", {"json": {"id": "00000000-0000-0000-0000-000000000000"}},
     404, "orchestration"),
    ("unknown-task", "/v1/api/task/get_by_id", {"json": {"id": "00000000-0000-0000-0000-000000000000"}}, 404, "task"),
    ("task-id-prefix", "/v1/api/task/get_by_id", {"json": {"id": "0"}}, 404, "task"),
    ("unknown-run-logs", "/v1/api/task/get_logs_for_run", {"json": {"id": "00000000-0000-0000-0000-000000000000"}}, 404,
     "run"),
    ("run-once-unknown-orch", "/v1/api/task/run_once",
     {"json": {"orch_id": "00000000-0000-0000-0000-000000000000", "workspace_id": 1, "json": {}}}, 404, "orchestration"),
    ("run-once-mistyped-json", "/v1/api/task/run_once", {"json": {"orch_id": "x", "workspace_id": 1, "json": "{}"}}, 422,
     "'json'"),
    ("runs-bad-status", "/v1/api/task/list_task_runs", {"json": {"task_id": "0" * 36, "status": "meh"}}, 422, "status"),
    ("schedule-missing", "/v1/api/task/run_scheduled", {"json": {"orch_id": "x", "workspace_id": 1}}, 422, "schedule"),
    ("logs-mistyped-lines", "/v1/api/task/get_logs_for_run", {"json": {"id": "x", "lines": "5"}}, 422, "lines"),
    ("workspace-mistyped", "/v1/api/workspaces/create", {"json": {"workspace_name": ["a"]}}, 422, "workspace_name"),
    ("deeply-nested-json", "/v1/api/connections/create", {"data": b"[" * 100000 + b"]" * 100000}, 400, "JSON"),
    ("huge-integer", "/v1/api/connections/list", {"json": {"workspace_id": 2 ** 80}}, 422, "workspace_id"),
    ("huge-integer-id", "/v1/api/connections/get_by_id", {"json": {"id": "9" * 40}}, 404, "connection"),
    ("wildcard-task-id", "/v1/api/task/get_by_id", {"json": {"id": "%" * 36}}, 404, "task"),
    ("wildcard-run-id", "/v1/api/task/get_logs_for_run", {"json": {"id": "_" * 36}}, 404, "run"),
    ("infer-deeply-nested", "/v1/api/pipelines/infer/housing",
     {"data": b"[" * 100000 + b"]" * 100000, "headers": {"Content-Type": "application/json; format=pandas-records"}},
     400, "JSON"),
    ("get-method", "/v1/api/connections/list", {"method": "GET"}, 405, "POST"),
    ("unknown-path", "/v1/api/nothing", {"json": {}}, 404, "no endpoint"),
    ("upload-not-multipart", "/v1/api/orchestration/upload", {"json": {"workspace_id": 1}}, 415, "multipart"),
    ("upload-no-metadata", "/v1/api/orchestration/upload", {"files": {"file": ("a.zip", b"PK")}}, 422, "metadata"),
    ("upload-no-file", "/v1/api/orchestration/upload", {"files": {"metadata": (None, b'{"workspace_id": 1}')}}, 422,
     "'file'"),
    ("upload-bad-metadata", "/v1/api/orchestration/upload",
     {"files": {"file": ("a.zip", _zip([("main.py", "")])), "metadata": (None, b'{"workspace_id": ')}}, 400,
     "metadata"),
    ("upload-not-a-zip", "/v1/api/orchestration/upload",
     {"files": {"file": ("a.zip", b"not a zip"), "metadata": (None, b'{"workspace_id": 1}')}}, 400, "not a readable zip"),
    ("upload-zip-slip", "/v1/api/orchestration/upload",
     {"files": {"file": ("a.zip", _zip([("main.py", ""), ("../evil.py", "")])),
                "metadata": (None, b'{"workspace_id": 1}')}}, 400, "outside"),
    ("upload-too-large", "/v1/api/orchestration/upload",
     {"files": {"file": ("a.zip", os.urandom(MAX_UPLOAD + 10)), "metadata": (None, b'{"workspace_id": 1}')}}, 413,
     "limit"),
    ("infer-unknown-pipeline", "/v1/api/pipelines/infer/nope-1/nope",
     {"data": b"[]", "headers": {"Content-Type": "application/json; format=pandas-records"}}, 404, "nope"),
    ("infer-wrong-content-type", "/v1/api/pipelines/infer/housing",
     {"data": b"x", "headers": {"Content-Type": "text/csv"}}, 415, "content type"),
    ("infer-bad-json", "/v1/api/pipelines/infer/housing",
     {"data": b"[{", "headers": {"Content-Type": "application/json; format=pandas-records"}}, 400, "JSON"),
    ("infer-not-records", "/v1/api/pipelines/infer/housing",
     {"data": b'{"tensor": [1]}', "headers": {"Content-Type": "application/json; format=pandas-records"}}, 400,
     "records"),
    ("infer-wrong-width", "/v1/api/pipelines/infer/housing",
     {"data": b'[{"tensor": [1, 2, 3]}]', "headers": {"Content-Type": "application/json; format=pandas-records"}}, 400,
     "expects 18"),
    ("infer-bad-arrow", "/v1/api/pipelines/infer/housing",
     {"data": b"ARROW1 nope", "headers": {"Content-Type": "application/vnd.apache.arrow.file"}}, 400, "Arrow"),
]


@pytest.mark.parametrize("path,request_kwargs,status,fragment", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_their_4xx_with_a_json_error(server, workspace_id, path, request_kwargs, status, fragment):
    kwargs = dict(request_kwargs)
    method = kwargs.pop("method", "POST")
    headers = {**server.headers, **kwargs.pop("headers", {})}
    answer = requests.request(method, server.url + path, headers=headers, timeout=30, **kwargs)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == status and body["status"] == "error" and fragment in body["msg"], body
    assert "Traceback" not in answer.text


def test_concurrent_requests_are_all_answered(server, workspace_id):
    rows = json.dumps(reference_rows()[:50])

    def work(i):
        created = server.post("/v1/api/connections/create", {"name": f"c{i}", "type": "HTTP", "details": {"host": f"http://127.0.0.1:9/{i}.arrow"}})
        added = server.post("/v1/api/connections/add_to_workspace",
                            {"workspace_id": workspace_id, "connection_id": created.json()["id"]})
        inferred = server.post("/v1/api/pipelines/infer/housing", data=rows,
                               headers={**server.headers, "Content-Type": "application/json; format=pandas-records"})
        got = server.post("/v1/api/connections/get", {"name": f"c{i}"}).json()
        return created.status_code, added.status_code, inferred.status_code, len(inferred.json()), got["details"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(work, range(40)))
    assert results == [(200, 200, 200, 50, {"host": f"http://127.0.0.1:9/{i}.arrow"}) for i in range(40)]
    assert "Traceback" not in server.log()


def test_an_oversize_upload_without_content_length_is_refused_while_it_streams(server, workspace_id):
    boundary = "orchzipboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n"
            f"{{\"workspace_id\": {workspace_id}}}\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"file\"; filename=\"big.zip\"\r\nContent-Type: application/zip\r\n\r\n").encode()

    def chunks():  # a generator body: requests sends it chunked, with no Content-Length
        yield head
        for _ in range(40):
            yield b"\0" * 65536

    answer = requests.post(server.url + "/v1/api/orchestration/upload", data=chunks(), timeout=30,
                           headers={**server.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 413 and answer.json()["code"] == 413
    assert not [n for n in os.listdir(os.path.join(server.state_dir, "orchestrations")) if n.startswith(".upload-")]


def test_a_task_sees_connections_made_over_rest_and_infers_through_local_pipelines(server, workspace_id, hello_zip):
    # The tutorial's order: connection over REST, then the orchestration reads it by name.
    details = {"project_id": "p", "dataset": "housing_data", "table": "inputs"}
    connection_id = server.post("/v1/api/connections/create",
                                {"name": "houseprice-inputs", "type": "BIGQUERY", "details": details}).json()["id"]
    server.post("/v1/api/connections/add_to_workspace", {"workspace_id": workspace_id, "connection_id": connection_id})
    orch = ready_orchestration(server, hello_zip, workspace_id)
    row = reference_rows()[0]
    task_id = run_once(server, orch, {"connection": "houseprice-inputs", "pipeline": "housing", "tensor": row["tensor"]})
    done = wait_for(lambda: task(server, task_id), ended)
    lines = logs(server, done["last_runs"][0]["run_id"])
    assert outcome(done) == "success", lines
    assert "connection houseprice-inputs BIGQUERY dataset=housing_data workspaces=['tests']" in lines
    prediction = float(next(line for line in lines if line.startswith("prediction")).split()[1])
    assert prediction == pytest.approx(float(expected_predictions([row])[0]), rel=1e-5)


def test_metadata_sent_as_a_file_part_is_read_too(server, workspace_id, hello_zip):
    with open(hello_zip, "rb") as fh:
        files = {"file": ("hello.zip", fh.read(), "application/zip"),
                 "metadata": ("metadata.json", json.dumps({"workspace_id": workspace_id}).encode(), "application/json")}
    answer = server.post("/v1/api/orchestration/upload", files=files)
    assert answer.status_code == 202, answer.text
