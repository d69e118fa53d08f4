"""`orchzip workspaces ...` and `--workspace` on connections and pipelines: the local workspaces."""

import sqlite3

import pytest

from conftest import RF_MODEL


@pytest.fixture
def cli(orchzip_cli):
    return orchzip_cli


def ok(result):
    assert result.code == 0, result
    return result


@pytest.mark.timeout(120)
def test_create_list_get_and_delete_a_workspace_as_json_and_as_text(cli):
    created = ok(cli("workspaces", "create", "team", "--json")).json()
    assert created["name"] == "team" and created["connections"] == [] and created["pipelines"] == []
    ok(cli("workspaces", "create", "other"))
    listed = ok(cli("workspaces", "list", "--json")).json()
    assert [w["name"] for w in listed] == ["team", "other"]
    assert listed[0]["id"] == created["id"]
    text = ok(cli("workspaces", "list")).out.splitlines()
    assert text[0].split() == ["NAME", "ID", "CONNECTIONS", "PIPELINES", "CREATED_AT"]
    assert text[1].split()[:4] == ["team", str(created["id"]), "0", "0"]
    assert ok(cli("workspaces", "get", "team", "--json")).json() == created
    assert ok(cli("workspaces", "delete", "other")).out.startswith("deleted workspace other")
    assert [w["name"] for w in ok(cli("workspaces", "list", "--json")).json()] == ["team"]


@pytest.mark.timeout(120)
def test_user_errors_are_one_line_saying_what_to_do(cli, state_dir):
    ok(cli("workspaces", "create", "team"))
    duplicate = cli("workspaces", "create", "team")
    assert duplicate.code == 2 and duplicate.err == "orchzip: error: workspace 'team' already exists\n"
    missing = cli("workspaces", "get", "nope")
    assert missing.code == 2
    assert missing.err == ("orchzip: error: unknown workspace 'nope' (known: team); "
                           f"create it with: orchzip workspaces create nope (looked in the state at {state_dir})\n")
    assert cli("workspaces", "delete", "nope").err == missing.err
    assert cli("workspaces", "create", " ").err == "orchzip: error: a workspace needs a non-empty name\n"
    no_connection = cli("workspaces", "add-connection", "team", "houses")
    assert no_connection.code == 2 and "unknown connection 'houses'" in no_connection.err
    assert len(no_connection.err.splitlines()) == 1
    no_pipeline = cli("workspaces", "add-pipeline", "team", "hp")
    assert no_pipeline.code == 2 and "create it with: orchzip pipelines create hp" in no_pipeline.err
    assert "Traceback" not in no_connection.err + no_pipeline.err + missing.err


@pytest.mark.timeout(120)
def test_connections_and_pipelines_go_into_workspaces_at_creation_or_later(cli):
    ok(cli("workspaces", "create", "team"))
    ok(cli("workspaces", "create", "lab"))
    refused = cli("connections", "create", "houses", "--type", "FILE", "--details", '{"path": "h.parquet"}',
                  "--workspace", "team", "--workspace", "nowhere")
    assert refused.code == 2 and "unknown workspace 'nowhere'" in refused.err
    assert ok(cli("connections", "list", "--json")).json() == []  # nothing half-made
    houses = ok(cli("connections", "create", "houses", "--type", "FILE", "--details", '{"path": "h.parquet"}',
                    "--workspace", "team", "--json")).json()
    assert houses["workspace_names"] == ["team"]
    ok(cli("connections", "create", "results", "--type", "FILE", "--details", '{"path": "r.parquet"}'))
    ok(cli("workspaces", "add-connection", "team", "results"))
    ok(cli("workspaces", "add-connection", "lab", "results"))
    pipeline = ok(cli("pipelines", "create", "hp", "--model", RF_MODEL, "--workspace", "team", "--json")).json()
    assert pipeline["workspace_name"] == "team"
    ok(cli("pipelines", "create", "hp2", "--model", RF_MODEL))

    team = ok(cli("workspaces", "get", "team", "--json")).json()
    assert team["connections"] == ["houses", "results"] and team["pipelines"] == ["hp"]
    assert "results" in ok(cli("workspaces", "get", "lab")).out
    assert ok(cli("connections", "get", "results", "--json")).json()["workspace_names"] == ["lab", "team"]

    # A pipeline is in one workspace: adding it to another moves it.
    moved = ok(cli("workspaces", "add-pipeline", "lab", "hp"))
    assert moved.out.strip() == "pipeline hp is in workspace lab (moved from team)"
    assert ok(cli("workspaces", "get", "team", "--json")).json()["pipelines"] == []
    listing = ok(cli("pipelines", "list")).out.splitlines()
    assert listing[1].split()[:2] == ["hp", "lab"] and listing[2].split()[:2] == ["hp2", "(default)"]

    ok(cli("workspaces", "remove-connection", "team", "results"))
    ok(cli("workspaces", "remove-pipeline", "lab", "hp"))
    not_there = cli("workspaces", "remove-pipeline", "lab", "hp")
    assert not_there.err == "orchzip: error: pipeline 'hp' is not in workspace 'lab'\n"
    assert ok(cli("workspaces", "get", "team", "--json")).json()["connections"] == ["houses"]
    assert ok(cli("pipelines", "list", "--json")).json()[0]["workspace_name"] is None


@pytest.mark.timeout(120)
def test_deleting_a_workspace_keeps_its_connections_and_pipelines(cli, state_dir):
    ok(cli("workspaces", "create", "team"))
    ok(cli("connections", "create", "houses", "--type", "FILE", "--details", '{"path": "h.parquet"}',
           "--workspace", "team"))
    ok(cli("pipelines", "create", "hp", "--model", RF_MODEL, "--workspace", "team"))
    ok(cli("workspaces", "delete", "team", "--json"))
    assert ok(cli("connections", "get", "houses", "--json")).json()["workspace_names"] == []
    assert ok(cli("pipelines", "list", "--json")).json()[0]["workspace_name"] is None


@pytest.mark.timeout(120)
def test_a_workspace_holding_uploaded_orchestrations_is_not_deleted(cli, state_dir):
    created = ok(cli("workspaces", "create", "team", "--json")).json()
    with sqlite3.connect(f"{state_dir}/state.db") as db:  # as orchzip serve records an upload
        db.execute("INSERT INTO orchestrations(id, workspace_id, file_name, file_size, sha, path, status, "
                   "owner_id, created_at, updated_at) VALUES ('o1', ?, 'a.zip', 1, 's', '/x', 'ready', 'local', "
                   "'2026-01-01', '2026-01-01')", (created["id"],))
    refused = cli("workspaces", "delete", "team")
    assert refused.code == 2
    assert refused.err == ("orchzip: error: workspace 'team' holds 1 uploaded orchestration(s); "
                           "a workspace with orchestrations cannot be deleted\n")
    assert [w["name"] for w in ok(cli("workspaces", "list", "--json")).json()] == ["team"]


def test_help_lists_every_workspace_action(cli):
    out = ok(cli("workspaces", "--help")).out
    for action in ("create", "list", "get", "delete", "add-connection", "remove-connection",
                   "add-pipeline", "remove-pipeline"):
        assert action in out
    assert "--workspace" in ok(cli("connections", "create", "--help")).out
    assert "--workspace" in ok(cli("pipelines", "create", "--help")).out
