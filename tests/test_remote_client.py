"""The MLOps client's credentials, retries and errors, against a scripted HTTP server on loopback."""

import http.server
import json
import threading
import urllib.parse

import pytest

from orchzip.mlops import Client, Settings
from orchzip.mlops import (
    AuthenticationFailed, InstanceUnavailable, MissingCredentials, NameTaken, NotFoundOnInstance, OperationFailed,
)

pytestmark = pytest.mark.timeout(60)


class Scripted(http.server.ThreadingHTTPServer):
    """Answers each path from a list of (status, JSON body); records every request."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script, self.seen = {}, []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, path, *answers):
        self.script[path] = list(answers)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.seen.append((self.path, dict(self.headers), body))
        answers = self.server.script.get(self.path) or [(404, {"msg": "no such path", "code": 404})]
        status, payload = answers.pop(0) if len(answers) > 1 else answers[0]
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = Scripted()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client(stub, **settings):
    settings.setdefault("token", "tok-123")
    return Client(Settings(url=stub.url, environ={}, backoff=0, **settings), sleep=lambda s: None)


def paths(stub):
    return [p for p, _, _ in stub.seen]


def test_user_and_password_are_exchanged_at_keycloak_for_a_bearer_token(stub):
    stub.answer("/auth/realms/master/protocol/openid-connect/token", (200, {"access_token": "from-keycloak"}))
    stub.answer("/v1/api/workspaces/list", (200, {"workspaces": []}))
    c = client(stub, token=None, user="alice", password="pw-secret")
    assert c.list_workspaces() == [] and c.list_workspaces() == []
    login = urllib.parse.parse_qs(stub.seen[0][2].decode())
    assert login == {"grant_type": ["password"], "client_id": ["sdk-client"], "username": ["alice"],
                     "password": ["pw-secret"]}
    assert paths(stub).count("/auth/realms/master/protocol/openid-connect/token") == 1
    assert stub.seen[1][1]["Authorization"] == "Bearer from-keycloak"
    assert "pw-secret" not in repr(c) and "from-keycloak" not in repr(c)


def test_a_refused_password_is_an_authentication_error_without_the_password(stub):
    stub.answer("/auth/realms/master/protocol/openid-connect/token", (401, {"error": "invalid_grant pw-secret"}))
    with pytest.raises(AuthenticationFailed) as err:
        client(stub, token=None, user="alice", password="pw-secret").list_workspaces()
    assert "pw-secret" not in str(err.value) and "WALLAROO_PASSWORD" in str(err.value)


def test_settings_take_flags_then_environment_and_hide_secrets():
    env = {"WALLAROO_URL": "http://env:1", "WALLAROO_TOKEN": "env-token", "WALLAROO_USER": "bob",
           "WALLAROO_PASSWORD": "env-pw"}
    s = Settings(environ=env)
    assert (s.url, s.token, s.token_source, s.user) == ("http://env:1", "env-token", "WALLAROO_TOKEN", None)
    s = Settings(url="http://flag:2/", user="alice", environ=env)
    assert (s.url, s.token, s.user, s.password, s.password_source) == ("http://flag:2", None, "alice", "env-pw",
                                                                       "WALLAROO_PASSWORD")
    assert "env-pw" not in repr(s) and "<hidden>" in repr(s)
    with pytest.raises(MissingCredentials, match="no credentials"):
        Settings(url="http://x", environ={}).check()
    with pytest.raises(MissingCredentials, match="has no password"):
        Settings(url="http://x", user="alice", environ={}).check()


def test_gateway_errors_are_retried_a_bounded_number_of_times(stub):
    stub.answer("/v1/api/task/get_by_id", (503, {"msg": "busy"}), (502, {"msg": "busy"}), (200, {"id": "t", "status": "success"}))
    assert client(stub).get_task("t")["status"] == "success"
    assert paths(stub).count("/v1/api/task/get_by_id") == 3
    stub.seen.clear()
    stub.answer("/v1/api/task/get_by_id", (503, {"msg": "still busy"}))
    with pytest.raises(InstanceUnavailable, match="503.*still busy.*try again later"):
        client(stub, retries=2).get_task("t")
    assert paths(stub).count("/v1/api/task/get_by_id") == 3


def test_a_500_is_not_retried_for_calls_that_would_act_twice(stub):
    stub.answer("/v1/api/task/run_once", (500, {"msg": "oops"}), (201, {"id": "t2"}))
    with pytest.raises(InstanceUnavailable):
        client(stub).run_once("o", 1)
    assert paths(stub).count("/v1/api/task/run_once") == 1


@pytest.mark.parametrize("status,error,words", [
    (401, AuthenticationFailed, "check your credentials"),
    (404, NotFoundOnInstance, "WALLAROO_URL"),
    (409, NameTaken, "name is taken"),
])
def test_http_failures_become_one_actionable_line_without_the_token(stub, status, error, words):
    stub.answer("/v1/api/connections/create", (status, {"msg": "server said tok-123", "code": status}))
    with pytest.raises(error) as err:
        client(stub).create_connection("c", "HTTP", {})
    message = str(err.value)
    assert words in message and "\n" not in message and "tok-123" not in message and "<hidden>" in message


def test_waiting_for_an_orchestration_that_fails_packaging_says_why(stub):
    stub.answer("/v1/api/orchestration/get_by_id", (200, {"id": "o", "status": "packaging"}),
                (200, {"id": "o", "status": "error", "error": "no main.py"}))
    seen = []
    with pytest.raises(OperationFailed, match="no main.py"):
        client(stub).wait_for_orchestration("o", on_status=lambda o: seen.append(o["status"]))
    assert seen == ["packaging", "error"]


def test_the_upload_is_multipart_with_file_and_metadata(stub, tmp_path):
    zip_path = tmp_path / "orch.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    stub.answer("/v1/api/orchestration/upload", (202, {"id": "o1"}))
    assert client(stub).upload_orchestration(str(zip_path), 7, name="n") == {"id": "o1"}
    _, headers, body = stub.seen[0]
    assert headers["Content-Type"].startswith("multipart/form-data")
    assert b'name="file"; filename="orch.zip"' in body and b'{"workspace_id": 7, "name": "n"}' in body
