"""CLI habits users bring from git, uv and dbt: options anywhere, JSON from every command,
tables without 'None', --last instead of pasting ids, and old runs pruned on request."""

import os
import subprocess

import pytest


@pytest.fixture
def quick_task(tmp_path):
    """A tiny orchestration folder that prints one line and ends (no connections needed)."""
    folder = tmp_path / "hello"
    folder.mkdir()
    (folder / "main.py").write_text("print('hello from the task')\n")
    (folder / "requirements.txt").write_text("")
    return str(folder)


def test_state_dir_and_json_are_taken_before_or_after_the_command(orchzip_cli, tmp_path):
    other = str(tmp_path / "other")
    assert orchzip_cli("connections", "create", "a", "--type", "FILE", "--details", '{"path": "a.parquet"}',
                       "--state-dir", other).code == 0
    after = orchzip_cli("connections", "list", "--state-dir", other, "--json")
    before = orchzip_cli("--state-dir", other, "--json", "connections", "list")
    assert after.code == before.code == 0, (after, before)
    assert [c["name"] for c in after.json()] == [c["name"] for c in before.json()] == ["a"]
    # The state of the fixture (ORCHZIP_STATE_DIR) did not get it.
    assert orchzip_cli("connections", "list", "--json").json() == []


def test_json_before_a_command_without_json_output_is_refused_in_one_line(orchzip_cli):
    result = orchzip_cli("--json", "serve", "--port", "1")
    assert result.code == 2
    assert "orchzip serve has no --json output" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("kind, create", [
    ("connection", ["connections", "create", "c1", "--type", "FILE", "--details", '{"path": "x.parquet"}']),
    ("workspace", ["workspaces", "create", "c1"]),
])
def test_every_delete_prints_json_when_asked(orchzip_cli, kind, create):
    assert orchzip_cli(*create).code == 0
    result = orchzip_cli(f"{kind}s", "delete", "c1", "--json")
    assert result.code == 0, result
    assert result.json() == {"deleted": kind, "name": "c1"}


def test_tables_show_nothing_rather_than_none(orchzip_cli, quick_task):
    assert orchzip_cli("run", quick_task, "--no-env").code == 0
    listing = orchzip_cli("tasks", "list")
    assert listing.code == 0 and "hello" in listing.out
    assert "None" not in listing.out


def test_last_names_the_newest_run(orchzip_cli, quick_task):
    assert orchzip_cli("runs", "logs", "--last").code == 2  # no runs yet: one clean line
    first = orchzip_cli("run", quick_task, "--no-env", "--json").json()
    second = orchzip_cli("run", quick_task, "--no-env", "--json").json()
    shown = orchzip_cli("runs", "show", "--last", "--json").json()
    assert shown["id"] == second["id"] != first["id"]
    logs = orchzip_cli("runs", "logs", "--last")
    assert "hello from the task" in logs.out
    both = orchzip_cli("runs", "logs", "--last", second["id"])
    assert both.code == 2 and "not both" in both.err


def test_prune_keeps_the_newest_runs_of_each_task_and_removes_their_folders(orchzip_cli, quick_task, state_dir):
    ids = [orchzip_cli("run", quick_task, "--no-env", "--name", "hello", "--json").json()["id"] for _ in range(3)]
    dry = orchzip_cli("runs", "prune", "--keep", "1", "--dry-run", "--json")
    assert sorted(dry.json()["would_prune"]) == sorted(ids[:2])
    assert len(orchzip_cli("runs", "list", "--json").json()) == 3
    pruned = orchzip_cli("runs", "prune", "--keep", "1", "--json").json()["pruned"]
    assert sorted(pruned) == sorted(ids[:2])
    left = orchzip_cli("runs", "list", "--json").json()
    assert [r["id"] for r in left] == [ids[2]]
    for run_id in ids[:2]:
        assert not os.path.exists(os.path.join(state_dir, "runs", run_id))
    assert os.path.isdir(os.path.join(state_dir, "runs", ids[2]))
    # Older than a day: nothing here is.
    assert orchzip_cli("runs", "prune", "--older-than", "1", "--json").json() == {"pruned": []}
    refused = orchzip_cli("runs", "prune")
    assert refused.code == 2 and "--keep" in refused.err


def test_scheduler_for_seconds_stops_by_itself(orchzip_cli):
    result = orchzip_cli("scheduler", "--for", "1", timeout=60)
    assert result.code == 0, result
    assert "scheduler stopped" in result.err
    assert orchzip_cli("scheduler", "--for", "0").code == 2


def test_a_failing_tasks_traceback_starts_at_the_users_main_py(orchzip_cli, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "main.py").write_text("import helper\nhelper.explode()\n")
    (folder / "helper.py").write_text("def explode():\n    raise ValueError('boom')\n")
    (folder / "requirements.txt").write_text("")
    result = orchzip_cli("run", str(folder), "--no-env")
    assert result.code == 1
    shown = result.out + result.err
    trace = shown[shown.index("Traceback"):]
    assert 'File "main.py", line 2, in <module>' in trace
    assert 'File "helper.py", line 2, in explode' in trace
    assert "ValueError: boom" in trace
    for hidden in ("task_bootstrap", "runpy", "/runs/"):
        assert hidden not in trace.split("ValueError: boom")[0], trace


def test_bash_completion_completes_commands_and_subcommands(orchzip_cli):
    script = orchzip_cli("completion", "bash")
    assert script.code == 0, script

    def complete(*words):
        line = " ".join(words)
        probe = (f'{script.out}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE="{line}"; '
                 'COMP_POINT=${#COMP_LINE}; _shtab_orchzip; echo "${COMPREPLY[@]}"')
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
        return done.stdout.split()

    assert complete("orchzip", "ru") == ["run", "runs"]
    assert "prune" in complete("orchzip", "runs", "p")
    assert orchzip_cli("completion", "fish").code == 2
