"""What the wallaroo SDK needs of `orchzip serve` beyond plain REST, over real HTTP.

The unauthenticated platform config, the GraphQL API (introspected and queried with
graphql-core, as the SDK's client does), ``list_all``'s nested shape, run types, Wallaroo's
task and run statuses, run details, tasks by orchestration sha, pause/resume and log lines in
Wallaroo's form. tests/test_sdk_notebook.py drives the same through the SDK itself.
"""

import os
import re
import sys

import pytest
import requests
from graphql import build_client_schema, get_introspection_query, parse, validate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, ended, outcome, wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(300)

HELLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve", "hello")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] ")
TASK_STATUSES = {"pending", "started", "pending_kill", "killed", "failed", "success", "timed_out", "paused",
                 "pending_pause", "pending_resume", "crash_loop", "resource_contention", "schedule_error"}

# The selections the SDK makes (its orchestration and workspace documents), written out here.
ORCHESTRATION_BY_PK = """query GetOrchestration($id: uuid!) { orchestration_by_pk(id: $id) {
  id name file_name owner_id sha status task_id workspace_id created_at updated_at image_path
  created_on_version file_size created_by } }"""
ORCHESTRATIONS_BY_TASK = """query ByTask($task_id: uuid!) { orchestration(where: {task_id: {_eq: $task_id}}) { id } }"""
ORCHESTRATIONS_OF_WORKSPACE = """query OfWorkspace($workspace_id: bigint!) {
  orchestration(where: {workspace_id: {_eq: $workspace_id}}) { id sha files { size } workspace { id name group_id } } }"""
WORKSPACE_BY_PK = """query WorkspaceById($id: bigint!) { workspace_by_pk(id: $id) {
  archived created_at created_by id name users { user_id }
  models(order_by: {updated_at: desc}) { id models { id } } pipelines { id } } }"""
DEFAULT_WORKSPACE = """query UserDefaultWorkspace($user_id: String = "") {
  user_default_workspace(where: {user_id: {_eq: $user_id}}) { workspace { id name pipelines { id } } } }"""
CREATE_DEFAULT_WORKSPACE = """mutation CreateDefault($user_id: String!, $workspace_name: String!, $user_type: String) {
  insert_workspace_one(object: {name: $workspace_name, owner_id: $user_id, created_by: $user_id,
      users: {data: {user_id: $user_id, user_type: $user_type}}, archived: false,
      user_default_workspaces: {data: {user_id: $user_id}}},
    on_conflict: {constraint: workspace_name_key, update_columns: []}) { id name } }"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("serve-wallaroo") / "state"
    srv = Server(state, state.parent / "serve.log", "--no-env").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def setup(server, tmp_path_factory):
    """A workspace, a ready orchestration and a run-once task that has run."""
    from orchzip.builder import build
    zip_path = build(HELLO, str(tmp_path_factory.mktemp("dist"))).zip_path
    ws = server.post("/v1/api/workspaces/create", {"workspace_name": "wallaroo-api"}).json()["workspace_id"]
    other = server.post("/v1/api/workspaces/create", {"workspace_name": "other"}).json()["workspace_id"]
    with open(zip_path, "rb") as fh:
        files = {"file": ("hello.zip", fh.read(), "application/zip"),
                 "metadata": (None, b'{"workspace_id": %d, "name": "hello"}' % ws, "application/json")}
    orch_id = server.post("/v1/api/orchestration/upload", files=files).json()["id"]
    orch = wait_for(lambda: server.post("/v1/api/orchestration/get_by_id", {"id": orch_id}).json(),
                    lambda o: o["status"] in ("ready", "error"))
    assert orch["status"] == "ready", orch
    task_id = server.post("/v1/api/task/run_once", {"orch_id": orch_id, "workspace_id": ws, "json": {"n": 1}}).json()["id"]
    task = wait_for(lambda: server.post("/v1/api/task/get_by_id", {"id": task_id}).json(), ended)
    return {"workspace_id": ws, "other_workspace_id": other, "orch": orch, "task": task}


def graphql(server, query, variables=None):
    answer = server.post("/v1/graphql", {"query": query, "variables": variables or {}})
    assert answer.status_code == 200, answer.text
    return answer.json()


# -- config ------------------------------------------------------------------------------------
def test_config_is_served_without_a_token_and_names_the_architecture(server):
    answer = requests.get(server.url + "/v1/api/config", timeout=10)
    assert answer.status_code == 200 and answer.json()["default_arch"] in ("x86", "arm", "power10")
    assert server.token not in answer.text
    # Only that one path and method are open.
    assert requests.post(server.url + "/v1/api/config", json={}, timeout=10).status_code == 401
    assert requests.get(server.url + "/v1/api/config/x", timeout=10).status_code == 401
    assert requests.post(server.url + "/v1/graphql", json={"query": "{ workspace { id } }"}, timeout=10).status_code == 401


def test_default_arch_follows_the_machine():
    from orchzip.runtime.server._platform import default_arch
    assert [default_arch(m) for m in ("x86_64", "aarch64", "arm64", "ppc64le")] == ["x86", "arm", "arm", "power10"]


# -- GraphQL -----------------------------------------------------------------------------------
def test_introspection_gives_a_schema_every_sdk_query_validates_against(server):
    introspected = graphql(server, get_introspection_query(descriptions=True, input_value_deprecation=True))
    assert "errors" not in introspected
    schema = build_client_schema(introspected["data"])
    for query in (ORCHESTRATION_BY_PK, ORCHESTRATIONS_BY_TASK, ORCHESTRATIONS_OF_WORKSPACE, WORKSPACE_BY_PK,
                  DEFAULT_WORKSPACE, CREATE_DEFAULT_WORKSPACE):
        assert validate(schema, parse(query)) == [], query
    # And it refuses what it does not declare, as the SDK's client would before sending.
    assert validate(schema, parse("{ orchestration_by_pk(id: \"x\") { no_such_field } }"))


def test_orchestration_and_workspace_read_over_graphql(server, setup):
    orch = setup["orch"]
    got = graphql(server, ORCHESTRATION_BY_PK, {"id": orch["id"]})["data"]["orchestration_by_pk"]
    assert got["id"] == orch["id"] and got["status"] == "ready" and got["sha"] == orch["sha"]
    assert got["workspace_id"] == setup["workspace_id"] and got["file_name"] == "hello.zip" and got["name"] == "hello"
    assert got["file_size"] == orch["file_size"] and got["created_at"] == orch["created_at"]
    listed = graphql(server, ORCHESTRATIONS_OF_WORKSPACE, {"workspace_id": setup["workspace_id"]})["data"]["orchestration"]
    assert [o["id"] for o in listed] == [orch["id"]]
    assert listed[0]["workspace"]["name"] == "wallaroo-api" and listed[0]["files"] == [{"size": orch["file_size"]}]
    assert graphql(server, ORCHESTRATIONS_OF_WORKSPACE, {"workspace_id": setup["other_workspace_id"]})["data"] == \
        {"orchestration": []}
    ws = graphql(server, WORKSPACE_BY_PK, {"id": setup["workspace_id"]})["data"]["workspace_by_pk"]
    assert ws["name"] == "wallaroo-api" and ws["archived"] is False and ws["id"] == setup["workspace_id"]
    assert ws["models"] == [] and ws["users"] == []


def test_a_users_default_workspace_is_made_once_and_found_after(server):
    assert graphql(server, DEFAULT_WORKSPACE, {"user_id": "ann"})["data"] == {"user_default_workspace": []}
    variables = {"user_id": "ann", "workspace_name": "ann - Default Workspace", "user_type": "OWNER"}
    made = graphql(server, CREATE_DEFAULT_WORKSPACE, variables)["data"]["insert_workspace_one"]
    assert made["name"] == "ann - Default Workspace"
    again = graphql(server, CREATE_DEFAULT_WORKSPACE, variables)["data"]["insert_workspace_one"]
    assert again["id"] == made["id"]  # on_conflict: the existing one
    found = graphql(server, DEFAULT_WORKSPACE, {"user_id": "ann"})["data"]["user_default_workspace"]
    assert [d["workspace"]["id"] for d in found] == [made["id"]]
    assert graphql(server, DEFAULT_WORKSPACE, {"user_id": "bob"})["data"] == {"user_default_workspace": []}
    listed = server.post("/v1/api/workspaces/list", {}).json()["workspaces"]
    assert "ann - Default Workspace" in [w["name"] for w in listed]
    clash = graphql(server, """mutation { insert_workspace_one(object: {name: "ann - Default Workspace"}) { id } }""")
    assert "already exists" in clash["errors"][0]["message"]
    empty = graphql(server, """mutation { insert_workspace_one(object: {name: " "}) { id } }""")
    assert "non-empty name" in empty["errors"][0]["message"]


def test_a_workspaces_pipelines_are_listed(server, tmp_path):
    from conftest import RF_MODEL
    from serve_helpers import orchzip
    ws = server.post("/v1/api/workspaces/create", {"workspace_name": "with-pipeline"}).json()["workspace_id"]
    orchzip(server.state_dir, "pipelines", "create", "ws-pipe", "--model", RF_MODEL, "--workspace", "with-pipeline")
    rest = next(w for w in server.post("/v1/api/workspaces/list", {}).json()["workspaces"] if w["id"] == ws)
    over_graphql = graphql(server, WORKSPACE_BY_PK, {"id": ws})["data"]["workspace_by_pk"]
    assert len(rest["pipelines"]) == 1 and over_graphql["pipelines"] == [{"id": rest["pipelines"][0]}]


def test_missing_rows_are_null_and_bad_queries_are_graphql_errors(server):
    missing = graphql(server, ORCHESTRATION_BY_PK, {"id": "00000000-0000-0000-0000-000000000000"})
    assert missing == {"data": {"orchestration_by_pk": None}}
    assert graphql(server, WORKSPACE_BY_PK, {"id": 987654})["data"] == {"workspace_by_pk": None}
    unknown = graphql(server, "{ orchestration { nope } }")
    assert unknown["data"] is None and "nope" in unknown["errors"][0]["message"]
    unset = graphql(server, ORCHESTRATION_BY_PK)
    assert "$id" in unset["errors"][0]["message"]
    assert "mutation" in graphql(server, "mutation { x }")["errors"][0]["message"].lower()
    for body in ({}, {"query": 3}, {"query": "{ workspace { id } }", "variables": [1]}):
        answer = server.post("/v1/graphql", body)
        assert answer.status_code == 400 and ("query" in answer.json()["msg"] or "variables" in answer.json()["msg"])
    assert server.post("/v1/graphql", data=b"{not json", headers={**server.headers, "Content-Type": "application/json"}
                       ).status_code == 400


# -- REST shapes -------------------------------------------------------------------------------
def test_list_all_nests_tasks_and_workspace_and_filters(server, setup):
    body = server.post("/v1/api/orchestration/list_all", {"task_run_status": [], "workspace_ids": []}).json()
    item = next(i for i in body["orchestrations"] if i["orchestration"]["id"] == setup["orch"]["id"])
    assert set(item) == {"orchestration", "tasks", "workspace"}
    assert item["workspace"]["id"] == setup["workspace_id"] and item["workspace"]["name"] == "wallaroo-api"
    assert [t["id"] for t in item["tasks"]] == [setup["task"]["id"]] and item["tasks"][0]["run_type"] == "Oneshot"
    only_other = server.post("/v1/api/orchestration/list_all",
                             {"task_run_status": [], "workspace_ids": [setup["other_workspace_id"]]}).json()
    assert only_other == {"orchestrations": []}
    succeeded = server.post("/v1/api/orchestration/list_all", {"task_run_status": ["success"], "workspace_ids": []})
    assert setup["orch"]["id"] in [i["orchestration"]["id"] for i in succeeded.json()["orchestrations"]]
    failed = server.post("/v1/api/orchestration/list_all", {"task_run_status": ["failure"], "workspace_ids": []})
    assert failed.json() == {"orchestrations": []}
    bad = server.post("/v1/api/orchestration/list_all", {"task_run_status": [], "workspace_ids": ["one"]})
    assert bad.status_code == 422 and "workspace_ids" in bad.json()["msg"]


def test_a_finished_run_once_task_stays_started_and_its_run_has_the_outcome(server, setup):
    task = setup["task"]
    assert task["status"] == "started" and outcome(task) == "success" and task["run_type"] == "Oneshot"
    listed = server.post("/v1/api/task/list", {"workspace_id": setup["workspace_id"]}).json()
    assert all(t["status"] in TASK_STATUSES and t["run_type"] in ("Oneshot", "CronJob", "NetworkService")
               for t in listed)


def test_run_details_of_a_task_run(server, setup):
    task, run = setup["task"], setup["task"]["last_runs"][0]
    details = server.post("/v1/api/task/get_run_details", {"task": task["id"], "pod_id": run["run_id"]}).json()
    wallaroo_keys = {k: details[k] for k in ("run_id", "status", "created_at", "updated_at")}
    assert wallaroo_keys == {"run_id": run["run_id"], "status": "success", "created_at": run["created_at"],
                             "updated_at": run["updated_at"]}
    other = server.post("/v1/api/task/run_scheduled", {"orch_id": setup["orch"]["id"], "workspace_id": setup["workspace_id"],
                                                       "schedule": "0 3 * * *", "json": {}}).json()["id"]
    wrong = server.post("/v1/api/task/get_run_details", {"task": other, "pod_id": run["run_id"]})
    assert wrong.status_code == 404 and "not a run of task" in wrong.json()["msg"]
    server.post("/v1/api/task/kill", {"id": other})


def test_tasks_by_orchestration_sha(server, setup):
    ids = server.post("/v1/api/task/get_tasks_by_orch_sha", {"sha": setup["orch"]["sha"]}).json()["ids"]
    assert setup["task"]["id"] in ids
    assert server.post("/v1/api/task/get_tasks_by_orch_sha", {"sha": "0" * 64}).json() == {"ids": []}
    by_sha = server.post("/v1/api/task/list", {"orch_sha": setup["orch"]["sha"]}).json()
    assert setup["task"]["id"] in [t["id"] for t in by_sha]


def test_pause_and_resume_a_scheduled_task(server, setup):
    task_id = server.post("/v1/api/task/run_scheduled", {"orch_id": setup["orch"]["id"], "workspace_id": setup["workspace_id"],
                                                         "schedule": "0 3 * * *", "json": {}}).json()["id"]
    started = server.post("/v1/api/task/get_by_id", {"id": task_id}).json()
    assert started["status"] == "started" and started["run_type"] == "CronJob" and started["schedule"] == "0 3 * * *"
    paused = server.post("/v1/api/task/pause", {"id": task_id, "pause": True})
    assert paused.status_code == 202 and paused.json()["status"] == "paused"
    resumed = server.post("/v1/api/task/pause", {"id": task_id, "pause": False})
    assert resumed.status_code == 202 and resumed.json()["status"] == "started"
    once = server.post("/v1/api/task/pause", {"id": setup["task"]["id"], "pause": True})
    assert once.status_code == 409 and "only scheduled" in once.json()["msg"]
    assert server.post("/v1/api/task/pause", {"id": task_id}).status_code == 422
    killed = server.post("/v1/api/task/kill", {"id": task_id}).json()
    assert killed["status"] in ("pending_kill", "killed") and killed["killed"] is (killed["status"] == "killed")


def test_logs_are_in_wallaroo_form_with_its_framing_lines(server, setup):
    run_id = setup["task"]["last_runs"][0]["run_id"]
    lines = server.post("/v1/api/task/get_logs_for_run", {"id": run_id}).json()["logs"]
    assert lines and all(LOG_LINE.match(line) for line in lines), lines
    texts = [line.split(" ", 3)[3] for line in lines]
    # Between the first two framing lines: how the task's environment was set up (its Python).
    assert texts[0] == "WALLAROO: Setting up task run..." and "Task environment ready. Running..." in texts[1:4]
    assert "hello from the task, in_task=True, args=[('n', 1)]" in texts
    assert texts[-1] == "Task run complete. Status: success"
    assert [line.split(" ", 3)[3] for line in server.post("/v1/api/task/get_logs_for_run",
                                                          {"id": run_id, "lines": 1}).json()["logs"]] == [texts[-1]]
    # Times increase (setting up, running, complete) and are the run's own.
    times = [line.split(" ", 1)[0] for line in lines]
    assert times == sorted(times) and times[0].startswith(setup["task"]["last_runs"][0]["created_at"][:19])


def test_a_log_already_in_wallaroo_form_is_served_as_written(tmp_path):
    from orchzip.runtime.server._logs import wallaroo_log_lines
    log = tmp_path / "log.txt"
    written = ["2024-12-09T21:21:34.034571374Z stdout F Getting the connection",
               "2024-12-09T21:21:35.000000001Z stderr F Traceback (most recent call last):"]
    log.write_text("\n".join(written) + "\n")
    run = {"log_path": str(log), "created_at": "2024-12-09T21:21:33.000+00:00", "status": "failure"}
    assert wallaroo_log_lines(run) == written and wallaroo_log_lines(run, 1) == written[1:]
