"""Bad input to `orchzip serve`: every case gets a specific 4xx JSON answer, never a 500.

A real server subprocess on a loopback port; each case is a raw request as a client could
send it, the status it must get, and a fragment of the one-line ``msg``.
"""

import json
import os
import sqlite3
import sys

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, orchzip  # noqa: E402

from conftest import RF_MODEL  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SECRET = "hunter2-s3cr3t-value"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("serve") / "state"
    orchzip(str(state), "pipelines", "create", "hp", "--model", RF_MODEL)
    srv = Server(state, state.parent / "serve.log", "--no-env").start()
    yield srv
    srv.stop()


def assert_refused(answer, status, expect, secret=SECRET):
    assert answer.status_code == status, (answer.status_code, answer.text)
    body = answer.json()
    assert body["code"] == status and expect in body["msg"], body
    assert "\n" not in body["msg"] and "Traceback" not in answer.text
    if secret:
        assert secret not in answer.text


def create(server, name, type_, details):
    return server.post("/v1/api/connections/create", {"name": name, "type": type_, "details": details})


def raw_create(server, text):
    return server.post("/v1/api/connections/create", data=text.encode(),
                       headers={**server.headers, "Content-Type": "application/json"})


CONNECTION_CASES = [
    ("path is a number", "FILE", {"path": 123}, 400, "field 'path' must be a non-empty string"),
    ("unknown format", "FILE", {"path": "out.xml", "format": "xml"}, 400, "field 'format' must be one of"),
    ("missing path", "DUCKDB", {"table": "t"}, 400, "needs 'path'"),
    ("misspelt type", "FLIE", {"path": "a.parquet"}, 400, "did you mean FILE?"),
    ("type with a line break", "FILE\nX", {"path": "a.parquet"}, 400, "the type must be a name"),
    ("http scheme", "HTTP", {"host": "file:///etc/passwd"}, 400, "http:// or https:// URL"),
    ("secret in a bad field", "FILE", {"path": "a.parquet", "token": SECRET}, 400, "unknown field 'token'"),
    ("deep details", "ODBC", json.loads('{"a":' * 100 + "1" + "}" * 100), 400, "nest deeper than 32 levels"),
    ("details not an object", "FILE", [1], 422, "field 'details' must be a JSON object"),
]


@pytest.mark.parametrize("type_, details, status, expect", [c[1:] for c in CONNECTION_CASES],
                         ids=[c[0] for c in CONNECTION_CASES])
def test_connection_create_refuses_bad_details(server, type_, details, status, expect):
    assert_refused(create(server, "bad", type_, details), status, expect)


RAW_CASES = [
    ("nan", '{"name": "n", "type": "FILE", "details": {"path": NaN}}', "NaN is not a JSON number"),
    ("infinity", '{"name": "n", "type": "FILE", "details": {"path": "a.parquet", "x": -Infinity}}',
     "-Infinity is not a JSON number"),
    ("too deep to parse", '{"name": "n", "type": "ODBC", "details": ' + "[" * 100_000, "not valid JSON"),
]


@pytest.mark.parametrize("text, expect", [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_connection_create_refuses_what_is_not_json(server, text, expect):
    assert_refused(raw_create(server, text), 400, expect)


def test_nothing_refused_was_stored_and_list_still_answers(server):
    for case in CONNECTION_CASES:
        create(server, "bad", *case[1:3])
    for case in RAW_CASES:
        raw_create(server, case[1])
    answer = server.post("/v1/api/connections/list", {})
    assert answer.status_code == 200 and [c["name"] for c in answer.json()["connections"]] == []


def test_a_type_only_wallaroo_serves_is_kept_as_given(server):
    answer = create(server, "pg", "ODBC", {"dsn": "Driver=pg;Uid=bob"})
    assert answer.status_code == 200, answer.text
    got = server.post("/v1/api/connections/get", {"name": "pg"}).json()
    assert (got["type"], got["details"]) == ("ODBC", {"dsn": "Driver=pg;Uid=bob"})
    server.post("/v1/api/connections/delete", {"name": "pg"})


def test_bad_rows_already_stored_never_make_list_or_get_fail(server):
    with sqlite3.connect(os.path.join(server.state_dir, "state.db")) as db:
        db.executemany("INSERT INTO connections(name, type, details, created_at) VALUES (?, 'FILE', ?, 'then')",
                       [("nan", '{"path": NaN}'), ("deep", "[" * 5000 + "]" * 5000), ("garbage", "{")])
    try:
        answer = server.post("/v1/api/connections/list", {})
        assert answer.status_code == 200, answer.text
        assert {c["name"]: c["details"] for c in answer.json()["connections"]} == {"nan": {}, "deep": {}, "garbage": {}}
        for name in ("nan", "deep", "garbage"):
            got = server.post("/v1/api/connections/get", {"name": name})
            assert got.status_code == 200 and got.json()["details"] == {}, got.text
    finally:
        for name in ("nan", "deep", "garbage"):
            server.post("/v1/api/connections/delete", {"name": name})


# -- orchestration uploads: zips the server cannot trust get a 400 JSON --------------------
def _zip_cases():
    from test_bad_input_builder import ZIP_CASES
    return ZIP_CASES


@pytest.mark.parametrize("case", _zip_cases(), ids=[c[0] for c in _zip_cases()])
def test_upload_refuses_zips_it_cannot_trust(server, tmp_path, case):
    _, make, expect = case
    workspace = server.post("/v1/api/workspaces/create", {"workspace_name": f"w-{case[0]}"}).json()["workspace_id"]
    path = tmp_path / "orch.zip"
    make(str(path))
    files = [("file", ("orch.zip", path.read_bytes(), "application/zip")),
             ("metadata", (None, json.dumps({"workspace_id": workspace, "name": "bad"}).encode(), "application/json"))]
    answer = server.post("/v1/api/orchestration/upload", files=files)
    assert_refused(answer, 400, expect)
    assert "orch.zip" in answer.json()["msg"] and str(tmp_path) not in answer.json()["msg"]
    listed = server.post("/v1/api/orchestration/list", {"workspace_id": workspace}).json()
    assert listed == [] or listed.get("orchestrations", listed) == [], listed


# -- inference bodies: parsed with bounded memory, refused with a 4xx JSON ------------------------
INFER = "/v1/api/pipelines/infer/hp"
RECORDS = "application/json; format=pandas-records"
ROW = '{"tensor": [' + ", ".join(["1.5"] * 18) + "]}"

INFER_CASES = [
    ("NaN", RECORDS, "[" + ROW[:-1] + ', "x": NaN}]', 400, "NaN is not a JSON number"),
    ("not a list", RECORDS, ROW, 400, "must be a JSON list of records"),
    ("a record not an object", RECORDS, f"[{ROW}, 5]", 400, "record 1 is not a JSON object"),
    ("cut short", RECORDS, f"[{ROW}, {ROW}", 400, "not valid JSON"),
    ("extra data", RECORDS, f"[{ROW}] []", 400, "extra data after the list"),
    ("no records", RECORDS, "[]", 400, "body holds no records"),
    ("not utf-8", RECORDS, b'[{"tensor": "\xff"}]', 400, "not UTF-8 JSON"),
    ("mixed types", RECORDS, '[{"tensor": 1}, {"tensor": "a"}]', 400, "records do not form a table"),
    ("deep", RECORDS, "[" + "[" * 100_000, 400, "not valid JSON"),
    ("other content type", "text/csv", "a,b\n1,2\n", 415, "is not one of"),
    ("not arrow", "application/vnd.apache.arrow.file", "not arrow", 400, "body is not an Arrow IPC file"),
]


@pytest.mark.parametrize("content_type, body, status, expect", [c[1:] for c in INFER_CASES],
                         ids=[c[0] for c in INFER_CASES])
def test_inference_refuses_bad_bodies(server, content_type, body, status, expect):
    data = body if isinstance(body, bytes) else body.encode()
    answer = server.post(INFER, data=data, headers={**server.headers, "Content-Type": content_type})
    assert_refused(answer, status, expect)


@pytest.mark.parametrize("content_type, limit", [(RECORDS, 64 << 20), ("application/vnd.apache.arrow.file", 512 << 20)])
def test_inference_over_the_stated_limit_gets_413_before_the_body_is_read(server, content_type, limit):
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest("POST", INFER)
        for name, value in {**server.headers, "Content-Type": content_type, "Content-Length": str(limit + 1)}.items():
            connection.putheader(name, value)
        connection.endheaders()  # and no body: the answer must not wait for it
        answer = connection.getresponse()
        body = json.loads(answer.read())
    finally:
        connection.close()
    assert answer.status == 413 and f"over the limit of {limit:,}" in body["msg"], body


def test_a_streamed_body_over_the_limit_gets_413(server):
    chunk = b" " * (1 << 20)

    def body():  # no Content-Length: the server counts what arrives
        yield b"["
        for _ in range(70):
            yield chunk

    try:
        answer = server.post(INFER, data=body(), headers={**server.headers, "Content-Type": RECORDS})
    except requests.ConnectionError:
        pytest.skip("the server closed the connection while the client was still sending")
    assert_refused(answer, 413, "over the limit of 67,108,864 bytes")


def test_inference_in_many_record_groups_matches_one_group(server):
    rows = [{"tensor": [float(i % 7)] * 18} for i in range(25_000)]  # three groups of records
    answer = server.post(INFER, data=json.dumps(rows).encode(), headers={**server.headers, "Content-Type": RECORDS})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert len(got) == 25_000 and got[7]["in"]["tensor"] == [0.0] * 18
    assert got[1]["out"] == got[10_004]["out"] == got[20_007]["out"]  # all rows of 1.0
