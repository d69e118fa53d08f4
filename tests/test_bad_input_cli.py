"""Bad input on the command line: every case gets exit code 2 and one clean stderr line.

One table per kind of input. Each case names the argv (and any file it needs), a fragment
the one line must hold, and a secret that must appear nowhere in the output.
"""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import RF_MODEL

pytestmark = pytest.mark.timeout(120)

SECRET = "hunter2-s3cr3t-value"


def run_cli(state_dir, cwd, *argv, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WALLAROO_")}
    full_env.update(ORCHZIP_STATE_DIR=str(state_dir), **(env or {}))
    return subprocess.run([sys.executable, "-m", "orchzip", *argv], capture_output=True, text=True,
                          env=full_env, cwd=str(cwd), timeout=60)


def assert_clean_refusal(result, expect, secret=SECRET, code=2):
    """Exit ``code``, one stderr line holding ``expect``, no traceback, no secret anywhere."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("orchzip: error: ") and "Traceback" not in result.stderr, result.stderr
    assert expect in lines[0], lines[0]
    if secret:
        assert secret not in result.stderr and secret not in result.stdout


# -- connections create --------------------------------------------------------------------
CONNECTION_CASES = [
    ("nan", ["--type", "FILE", "--details", '{"path": NaN}'], "NaN is not a JSON number"),
    ("infinity", ["--type", "DUCKDB", "--details", '{"path": "a.duckdb", "threads": Infinity}'],
     "Infinity is not a JSON number"),
    ("path is a number", ["--type", "FILE", "--details", '{"path": 123}'], "field 'path' must be a non-empty string"),
    ("unknown format", ["--type", "FILE", "--details", '{"path": "out.xml", "format": "xml"}'],
     "field 'format' must be one of: arrow, csv, json, jsonl, parquet"),
    ("suffix tells no format", ["--type", "FILE", "--details", '{"path": "out.xml"}'], "add \"format\""),
    ("missing path", ["--type", "DUCKDB", "--details", '{"table": "t"}'], "needs 'path'"),
    ("threads not a number", ["--type", "DUCKDB", "--details", '{"path": "a.duckdb", "threads": "four"}'],
     "field 'threads' must be a whole number >= 1"),
    ("threads a boolean", ["--type", "DUCKDB", "--details", '{"path": "a.duckdb", "threads": true}'],
     "not a JSON boolean"),
    ("misspelt field", ["--type", "DUCKDB", "--details", '{"path": "a.duckdb", "tabel": "t"}'],
     "unknown field 'tabel'"),
    ("misspelt type", ["--type", "DUCKBD", "--details", '{"path": "a.duckdb"}'], "did you mean DUCKDB?"),
    ("type with spaces", ["--type", "MY TYPE", "--details", "{}"], "the type must be a name"),
    ("http without url", ["--type", "HTTP", "--details", '{"headers": {}}'], "needs 'host' or 'url'"),
    ("http not http", ["--type", "HTTP", "--details", '{"host": "ftp://x/y.arrow"}'], "http:// or https:// URL"),
    ("headers not strings", ["--type", "HTTP", "--details", '{"host": "http://x/a", "headers": {"A": 1}}'],
     "field 'headers' must be a JSON object of header names to strings"),
    ("bigquery read_api", ["--type", "BIGQUERY", "--details", '{"dataset": "d", "table": "t", "read_api": "grpc"}'],
     "field 'read_api' must be one of: auto, storage, rest"),
    ("bigquery retries negative", ["--type", "BIGQUERY", "--details", '{"retries": -1}'],
     "field 'retries' must be a whole number >= 0"),
    ("details an array", ["--type", "FILE", "--details", "[1, 2]"], "must be a JSON object"),
    ("details not json, secret kept out",
     ["--type", "HTTP", "--details", '{"host": "http://x", "headers": {"Authorization": "Bearer ' + SECRET + '"'],
     "--details is not valid JSON"),
    ("bad value, secret kept out",
     ["--type", "FILE", "--details", '{"path": "a.parquet", "password": "' + SECRET + '"}'], "unknown field 'password'"),
    ("deep details", ["--type", "ODBC", "--details", '{"a":' * 900 + "1" + "}" * 900], "nest deeper than 32 levels"),
    ("too deep to parse", ["--type", "ODBC", "--details", "[" * 100_000], "nests too deeply to read"),
    ("empty name", ["", "--type", "FILE", "--details", '{"path": "a.parquet"}'], "needs a non-empty name"),
    ("name with a line break", ["a\nb", "--type", "FILE", "--details", '{"path": "a.parquet"}'],
     "without line breaks"),
]


@pytest.mark.parametrize("argv, expect", [c[1:] for c in CONNECTION_CASES], ids=[c[0] for c in CONNECTION_CASES])
def test_connection_create_refuses_bad_details(tmp_path, argv, expect):
    name = [] if argv[0] in ("", "a\nb") else ["conn"]
    result = run_cli(tmp_path / "state", tmp_path, "connections", "create", *name, *argv)
    assert_clean_refusal(result, expect)
    listed = run_cli(tmp_path / "state", tmp_path, "connections", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


DETAILS_FILE_CASES = [
    ("missing", None, "no such file"),
    ("a folder", "folder", "is a folder, not a file"),
    ("not utf-8", b'{"path": "caf\xe9.parquet"}', "is not UTF-8 text"),
    ("not json", b"path: a.parquet\npassword: " + SECRET.encode(), "is not valid JSON"),
]


@pytest.mark.parametrize("content, expect", [c[1:] for c in DETAILS_FILE_CASES], ids=[c[0] for c in DETAILS_FILE_CASES])
def test_connection_details_file_refused_in_one_line(tmp_path, content, expect):
    path = tmp_path / "details.json"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    result = run_cli(tmp_path / "state", tmp_path, "connections", "create", "c", "--type", "FILE",
                     "--details-file", str(path))
    assert_clean_refusal(result, expect)


def test_details_file_with_a_bom_is_read(tmp_path):
    path = tmp_path / "details.json"
    path.write_bytes(b'\xef\xbb\xbf{"path": "a.parquet"}')
    result = run_cli(tmp_path / "state", tmp_path, "connections", "create", "c", "--type", "FILE",
                     "--details-file", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["details"]["path"] == str(tmp_path / "a.parquet")


def test_type_only_wallaroo_serves_is_kept_with_a_note(tmp_path):
    result = run_cli(tmp_path / "state", tmp_path, "connections", "create", "pg", "--type", "odbc",
                     "--details", json.dumps({"dsn": f"Driver=pg;Uid=bob;Pwd={SECRET}"}), "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("orchzip: note: type ODBC is kept as given") and len(result.stderr.splitlines()) == 1
    assert json.loads(result.stdout)["details"] == {"dsn": "Driver=pg;Uid=bob;Pwd=****"}
    assert SECRET not in result.stdout + result.stderr


def test_masking_covers_what_users_put_in_details(tmp_path):
    details = {
        "host": f"https://bob:{SECRET}@example.com/data.arrow?key={SECRET}&page=1",
        "headers": {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET, "Accept": "application/json",
                    "X-Env-Token": "Bearer ${API_TOKEN}"},
    }
    odbc = {"dsn": f"postgresql://bob:{SECRET}@db:5432/prod", "libpq": f"host=db password={SECRET} user=bob",
            "options": {"nested": [{"pwd": SECRET, "auth": {"user": "bob", "pin": 1234}, "key": SECRET}]},
            "client_secret": SECRET, "accessToken": SECRET, "token_uri": "https://oauth2.example.com/token"}
    state = tmp_path / "state"
    assert run_cli(state, tmp_path, "connections", "create", "web", "--type", "HTTP", "--details",
                   json.dumps(details)).returncode == 0
    assert run_cli(state, tmp_path, "connections", "create", "db", "--type", "ODBC", "--details",
                   json.dumps(odbc)).returncode == 0
    for argv in (["list"], ["list", "--json"], ["get", "web"], ["get", "db", "--json"]):
        result = run_cli(state, tmp_path, "connections", *argv)
        assert result.returncode == 0 and SECRET not in result.stdout + result.stderr, result.stdout
    shown = {r["name"]: r["details"] for r in json.loads(run_cli(state, tmp_path, "connections", "list",
                                                                 "--json").stdout)}
    assert shown["web"]["headers"] == {"Authorization": "****", "X-Api-Key": "****", "Accept": "application/json",
                                       "X-Env-Token": "Bearer ${API_TOKEN}"}
    assert shown["web"]["host"] == "https://bob:****@example.com/data.arrow?key=****&page=1"
    assert shown["db"]["options"]["nested"][0] == {"pwd": "****", "auth": {"user": "****", "pin": "****"},
                                                  "key": "****"}
    assert shown["db"]["dsn"] == "postgresql://bob:****@db:5432/prod"
    assert shown["db"]["libpq"] == "host=db password=**** user=bob"
    assert shown["db"]["token_uri"] == "https://oauth2.example.com/token"


STORED_ROWS = [
    ("nan", '{"path": NaN}', "hold NaN or Infinity"),
    ("deep", "[" * 5000 + "]" * 5000, "nest too deeply"),
    ("deep_object", '{"a":' * 200 + "1" + "}" * 200, "nest deeper"),
    ("garbage", "not json", "not valid JSON"),
    ("array", "[1, 2]", "not a JSON object"),
    ("path_number", '{"path": 123}', "field 'path' must be a non-empty string"),
]


def test_bad_rows_already_stored_never_break_list_or_get(tmp_path):
    state = tmp_path / "state"
    assert run_cli(state, tmp_path, "connections", "list").returncode == 0  # creates the database
    with sqlite3.connect(state / "state.db") as db:
        db.executemany("INSERT INTO connections(name, type, details, created_at) VALUES (?, 'FILE', ?, 'then')",
                       [(name, text) for name, text, _ in STORED_ROWS])
    listed = run_cli(state, tmp_path, "connections", "list")
    assert listed.returncode == 0 and not listed.stderr, listed.stderr
    rows = {r["name"]: r for r in json.loads(run_cli(state, tmp_path, "connections", "list", "--json").stdout)}
    for name, text, problem in STORED_ROWS:
        kept = json.loads(text) if name == "path_number" else {}  # readable details are kept as stored
        assert rows[name]["details"] == kept and problem in rows[name]["details_error"], rows[name]
        shown = run_cli(state, tmp_path, "connections", "get", name)
        assert shown.returncode == 0 and f"orchzip connections delete {name}" in shown.stdout, shown
        assert run_cli(state, tmp_path, "connections", "delete", name).returncode == 0


# -- credentials: a bad token or password is one line that never shows it ----------------------
def _sdk_credentials(tmp_path, text):
    path = tmp_path / "creds.json"
    path.write_bytes(text.encode())
    return str(path)


CREDENTIAL_CASES = [
    ("--token with CR LF inside", ["--token", f"{SECRET}\r\nx"], {}, None, "the token from --token holds a line break"),
    ("WALLAROO_TOKEN with a line break inside", [], {"WALLAROO_TOKEN": f"{SECRET}\nx"}, None,
     "the token from WALLAROO_TOKEN holds a line break"),
    ("WALLAROO_TOKEN not ASCII", [], {"WALLAROO_TOKEN": f"{SECRET}\u00e9"}, None, "non-ASCII character"),
    ("sdk credentials with CR LF inside the token", [], {}, '{"token": "%s\\r\\nx", "user_email": "a"}' % SECRET,
     "the token from WALLAROO_SDK_CREDENTIALS file"),
    ("sdk credentials not json", [], {}, f"token: {SECRET}", "not a JSON object with a \"token\" string"),
    ("sdk credentials missing", [], {"WALLAROO_SDK_CREDENTIALS": "/nonexistent/creds.json"}, None, "no such file"),
    ("password with a line break inside", ["--user", "bob", "--password", f"{SECRET}\r\nx"], {}, None,
     "the password from --password holds a line break"),
    ("WALLAROO_PASSWORD with a control character", [], {"WALLAROO_USER": "bob", "WALLAROO_PASSWORD": f"{SECRET}\x1b[2J"},
     None, "the password from WALLAROO_PASSWORD holds"),
]


@pytest.mark.parametrize("argv, env, creds, expect", [c[1:] for c in CREDENTIAL_CASES],
                         ids=[c[0] for c in CREDENTIAL_CASES])
def test_bad_credentials_are_one_line_that_never_shows_them(tmp_path, argv, env, creds, expect):
    env = dict(env, WALLAROO_URL="http://127.0.0.1:9")
    if creds is not None:
        env["WALLAROO_SDK_CREDENTIALS"] = _sdk_credentials(tmp_path, creds)
    result = run_cli(tmp_path / "state", tmp_path, "remote", "workspaces", "list", "--retries", "0", *argv, env=env)
    assert_clean_refusal(result, expect)


@pytest.mark.parametrize("env, creds", [
    ({"WALLAROO_TOKEN": f"{SECRET}\r\n"}, None),  # a token file saved on Windows, read with $(cat ...)
    ({}, '{"token": "%s\\r\\n", "user_email": "a", "user_id": "b"}' % SECRET),
], ids=["WALLAROO_TOKEN ending in CR LF", "sdk credentials"])
def test_a_token_ending_in_a_line_break_is_used(tmp_path, env, creds):
    env = dict(env, WALLAROO_URL="http://127.0.0.1:9")
    if creds is not None:
        env["WALLAROO_SDK_CREDENTIALS"] = _sdk_credentials(tmp_path, creds)
    result = run_cli(tmp_path / "state", tmp_path, "remote", "workspaces", "list", "--retries", "0", env=env)
    # Past the credential checks: the (closed) port is what fails.
    assert_clean_refusal(result, "cannot reach http://127.0.0.1:9", code=1)


def test_a_bad_serve_token_file_is_one_line_that_never_shows_it(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "serve-token").write_bytes(SECRET.encode() + b"\r\nsecond line\r\n")
    result = run_cli(state, tmp_path, "serve", "--show-token")
    assert_clean_refusal(result, "serve-token holds a line break")
    (state / "serve-token").write_bytes(SECRET.encode() + b"\r\n")
    shown = run_cli(state, tmp_path, "serve", "--show-token")
    assert shown.returncode == 0 and shown.stdout.strip() == SECRET


# -- pipelines: the model is loaded when the pipeline is created ----------------------------------
def _model(tmp_path, kind):
    path = tmp_path / "model.onnx"
    if kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zip":
        import zipfile
        with zipfile.ZipFile(path, "w") as archive:
            archive.write(RF_MODEL, "rf_model.onnx")
    elif kind == "folder":
        path.mkdir()
    elif kind == "good":
        path.write_bytes(open(RF_MODEL, "rb").read())
    return str(path)


PIPELINE_CASES = [
    ("text file", "p", "text", "is not an ONNX model orchzip can run"),
    ("empty file", "p", "empty", "model.onnx is empty"),
    ("zip", "p", "zip", "is a zip, not an ONNX model; give the .onnx file inside it"),
    ("folder", "p", "folder", "model.onnx is a folder, not a file"),
    ("missing", "p", "missing", "model.onnx does not exist"),
    ("empty name", "", "good", "a pipeline needs a non-empty name"),
    ("name with a line break", "a\nb", "good", "no line breaks"),
]


@pytest.mark.parametrize("name, kind, expect", [c[1:] for c in PIPELINE_CASES], ids=[c[0] for c in PIPELINE_CASES])
def test_pipeline_create_checks_the_model(tmp_path, name, kind, expect):
    result = run_cli(tmp_path / "state", tmp_path, "pipelines", "create", name, "--model", _model(tmp_path, kind))
    assert_clean_refusal(result, expect)
    listed = run_cli(tmp_path / "state", tmp_path, "pipelines", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
