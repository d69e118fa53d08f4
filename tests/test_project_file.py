"""orchzip.yaml: apply makes the state match the file, export writes it back, errors are located."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import EXAMPLE_MODEL, REPO

HOUSEPRICE_LOCAL = os.path.join(REPO, "orchestrations", "houseprice_local")

PROJECT = """\
workspaces: [houseprice]
connections:
  houseprice_inputs:
    type: duckdb
    details: {path: data/houses.duckdb, table: house_inputs}
    workspaces: [houseprice]
  houseprice_results:
    type: FILE
    details: {path: "${RESULTS_DIR}/results.parquet"}
pipelines:
  houseprice:
    model: model.onnx
    workspace: houseprice
orchestrations:
  houseprice_local: {path: orch, workspace: houseprice}
tasks:
  score:
    orchestration: houseprice_local
    args: {batch_size: 100, mode: overwrite}
    timeout: 600
  nightly:
    orchestration: houseprice_local
    schedule: "0 3 * * *"
    tz: Europe/Berlin
    overlap: allow
    retries: 2
    no_env: true
"""


@pytest.fixture
def project(tmp_path):
    """A project folder: orchzip.yaml, a copy of the embedded orchestration, a model."""
    root = tmp_path / "proj"
    shutil.copytree(HOUSEPRICE_LOCAL, root / "orch")
    shutil.copy(EXAMPLE_MODEL, root / "model.onnx")
    (root / "data").mkdir()
    (root / "orchzip.yaml").write_text(PROJECT)
    return root


def orchzip(*argv, cwd, env=None, timeout=180):
    """``orchzip ...`` as a user types it: no ORCHZIP_STATE_DIR, so the state is found from ``cwd``."""
    full_env = {k: v for k, v in os.environ.items() if k != "ORCHZIP_STATE_DIR"}
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-m", "orchzip", *argv], cwd=str(cwd), env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return done


def ok(done):
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def state_rows(state_dir):
    """Every row of every table of a state, to prove that nothing changed."""
    with sqlite3.connect(os.path.join(state_dir, "state.db")) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(map(repr, db.execute(f"SELECT * FROM {t}").fetchall())) for t in tables}


def test_apply_creates_everything_the_file_declares_and_a_second_apply_plans_nothing(project):
    first = ok(orchzip("apply", cwd=project))
    assert "7 to create, 0 to update, 0 to delete" in first.stdout
    assert "+ task nightly (schedule '0 3 * * *')" in first.stdout
    state = project / ".orchzip"
    before = state_rows(state)

    second = ok(orchzip("apply", "--json", cwd=project))
    assert json.loads(second.stdout)["changes"] == []
    assert state_rows(state) == before

    tasks = json.loads(ok(orchzip("tasks", "list", "--json", cwd=project)).stdout)
    [nightly] = [t for t in tasks if t["name"] == "nightly"]
    assert (nightly["kind"], nightly["schedule"], nightly["tz"], nightly["overlap"], nightly["retries"]) == \
        ("scheduled", "0 3 * * *", "Europe/Berlin", "allow", 2)
    connection = json.loads(ok(orchzip("connections", "get", "houseprice_inputs", "--json", cwd=project)).stdout)
    assert connection["details"]["path"] == str(project / "data" / "houses.duckdb")  # relative to the file
    assert connection["workspace_names"] == ["houseprice"]
    [pipeline] = json.loads(ok(orchzip("pipelines", "list", "--json", cwd=project)).stdout)
    assert pipeline["workspace_name"] == "houseprice"
    results = json.loads(ok(orchzip("connections", "get", "houseprice_results", "--json", cwd=project)).stdout)
    assert results["details"]["path"] == "${RESULTS_DIR}/results.parquet"  # kept unexpanded


def test_dry_run_creates_no_state_and_changes_none(project):
    dry = ok(orchzip("apply", "--dry-run", cwd=project))
    assert "7 to create" in dry.stdout and "dry run: nothing changed" in dry.stdout
    assert not (project / ".orchzip").exists()

    ok(orchzip("apply", cwd=project))
    before = state_rows(project / ".orchzip")
    text = (project / "orchzip.yaml").read_text()
    (project / "orchzip.yaml").write_text(text.replace('"0 3 * * *"', '"0 4 * * *"').replace("timeout: 600", ""))
    dry = ok(orchzip("apply", "--dry-run", "--json", cwd=project))
    assert [(c["action"], c["name"], c["changed"]) for c in json.loads(dry.stdout)["changes"]] == [
        ("update", "score", ["timeout"]), ("update", "nightly", ["schedule"])]
    assert state_rows(project / ".orchzip") == before


def test_apply_updates_and_deletes_to_match_an_edited_file(project):
    ok(orchzip("apply", cwd=project))
    nightly_id = _task_id(project, "nightly")
    text = (project / "orchzip.yaml").read_text()
    text = text.replace("table: house_inputs", "table: other_inputs").replace('"0 3 * * *"', '"30 3 * * *"')
    text = text.replace("  houseprice:\n    model: model.onnx\n", "  houseprice:\n    model: model.onnx\n"
                        "    tensor_column: features\n")
    text = text[:text.index("  score:")] + text[text.index("  nightly:"):]  # drop the run-once task
    (project / "orchzip.yaml").write_text(text)

    applied = ok(orchzip("apply", cwd=project))
    assert "~ connection houseprice_inputs: details changed" in applied.stdout
    assert "~ task nightly: schedule changed" in applied.stdout
    assert "~ pipeline houseprice: tensor_column changed" in applied.stdout
    assert "- task score" in applied.stdout
    assert "0 to create, 3 to update, 1 to delete" in applied.stdout
    assert _task_id(project, "nightly") == nightly_id  # updated in place: its history stays
    status = json.loads(ok(orchzip("tasks", "status", nightly_id, "--json", cwd=project)).stdout)
    assert status["schedule"] == "30 3 * * *" and "T02:30:00" in status["next_fire_times"][0]
    assert "nothing to change" in ok(orchzip("apply", cwd=project)).stdout

    # Removing the scheduled task from the file kills it: it fires no more.
    (project / "orchzip.yaml").write_text(text[:text.index("tasks:")])
    applied = ok(orchzip("apply", cwd=project))
    assert "- task nightly" in applied.stdout
    assert json.loads(ok(orchzip("tasks", "status", nightly_id, "--json", cwd=project)).stdout)["status"] == "killed"
    assert "nothing to change" in ok(orchzip("apply", cwd=project)).stdout


def test_a_changed_main_py_updates_the_scheduled_task_to_the_new_zip(project):
    ok(orchzip("apply", cwd=project))
    nightly = json.loads(ok(orchzip("tasks", "status", _task_id(project, "nightly"), "--json", cwd=project)).stdout)
    with open(project / "orch" / "main.py", "a", encoding="utf-8") as fh:
        fh.write("print('changed')\n")
    applied = ok(orchzip("apply", cwd=project))
    assert "~ task nightly: sha changed" in applied.stdout
    after = json.loads(ok(orchzip("tasks", "status", nightly["id"], "--json", cwd=project)).stdout)
    assert after["source"] != nightly["source"] and os.path.isfile(nightly["source"])  # the old zip is kept
    assert "nothing to change" in ok(orchzip("apply", cwd=project)).stdout


def test_export_writes_a_file_that_applies_to_the_same_state(project, tmp_path):
    ok(orchzip("apply", cwd=project))
    ok(orchzip("export", "-o", "exported.yaml", cwd=project))
    exported = (project / "exported.yaml").read_text()
    assert "path: data/houses.duckdb" in exported and "model: model.onnx" in exported  # relative again
    assert "${RESULTS_DIR}/results.parquet" in exported

    # The exported file describes the same state: applying it there plans nothing ...
    assert "nothing to change" in ok(orchzip("apply", "-f", "exported.yaml", cwd=project)).stdout
    # ... and builds the same state from nothing, which exports to the same text.
    other = tmp_path / "other-state"
    ok(orchzip("--state-dir", str(other), "apply", "-f", "exported.yaml", cwd=project))
    again = ok(orchzip("--state-dir", str(other), "export", "-o", "-", cwd=project)).stdout
    assert again == exported


def test_export_refuses_to_overwrite_a_different_file(project):
    ok(orchzip("apply", cwd=project))
    refused = orchzip("export", cwd=project)  # ./orchzip.yaml exists, hand-written
    assert refused.returncode == 2 and "exists and differs; give --force" in refused.stderr
    ok(orchzip("export", "--force", cwd=project))
    assert "nothing to change" in ok(orchzip("apply", cwd=project)).stdout


def test_export_writes_literal_secrets_as_env_references(tmp_path):
    state = tmp_path / "state"
    env = {"ORCHZIP_STATE_DIR": str(state)}
    key = {"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----abc", "dataset": "d", "table": "t"}
    ok(orchzip("connections", "create", "bq", "--type", "BIGQUERY", "--details", json.dumps(key), cwd=tmp_path, env=env))
    done = ok(orchzip("export", "-o", "-", cwd=tmp_path, env=env))
    assert "BEGIN PRIVATE KEY" not in done.stdout and "private_key: ${BQ_PRIVATE_KEY}" in done.stdout
    assert "set BQ_PRIVATE_KEY" in done.stderr
    with_secrets = ok(orchzip("export", "-o", "-", "--include-secrets", cwd=tmp_path, env=env))
    assert "BEGIN PRIVATE KEY-----abc" in with_secrets.stdout


def test_run_name_runs_a_declared_task_with_its_args(project):
    import duckdb
    with duckdb.connect(str(project / "data" / "houses.duckdb")) as db:
        db.execute("CREATE TABLE house_inputs AS SELECT tensor FROM read_parquet(?) LIMIT 40",
                   [os.path.join(REPO, "examples", "houseprice", "inputs.parquet")])
    ok(orchzip("apply", cwd=project))
    run = ok(orchzip("run", "score", "--no-env", "--json", cwd=project / "orch", env={"RESULTS_DIR": str(project / "data")}))
    record = json.loads(run.stdout)
    assert record["status"] == "success" and record["rows_written"] == 40
    task = json.loads(ok(orchzip("tasks", "status", record["task_id"], "--json", cwd=project)).stdout)
    assert task["name"] == "score" and task["args"] == {"batch_size": 100, "mode": "overwrite"} and task["timeout"] == 600

    missing = orchzip("run", "nope", cwd=project)
    assert missing.returncode == 2
    assert f"of the project in {project / '.orchzip'}" in missing.stderr and "tasks: nightly, score" in missing.stderr


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace("    tz: Europe/Berlin", "    tz: Mars/Base"),
     "orchzip.yaml:24: tasks.nightly.tz: unknown time zone 'Mars/Base'"),
    (lambda t: t.replace("    retries: 2", "    retrys: 2"),
     "orchzip.yaml:26: tasks.nightly.retrys: unknown key (allowed here: orchestration, args, timeout, schedule"),
    (lambda t: t.replace('"0 3 * * *"', '"0 3 * *"'),
     "orchzip.yaml:23: tasks.nightly.schedule: invalid cron string '0 3 * *': it has 4 fields"),
    (lambda t: t.replace("    orchestration: houseprice_local\n    args", "    orchestration: nope\n    args"),
     "orchzip.yaml:18: tasks.score.orchestration: orchestration 'nope' is not declared under orchestrations:"),
    (lambda t: t.replace("    timeout: 600", "    timeout: 600\n    schedule: x\n    schedule: y"),
     "orchzip.yaml:22: tasks.score.schedule: duplicate key (first at line 21)"),
    (lambda t: t.replace("    model: model.onnx", "    model: [model.onnx"),
     "orchzip.yaml:13: not valid YAML"),
    (lambda t: t.replace("    timeout: 600", "    timeout: 600\n    retries: 1"),
     "orchzip.yaml:17: tasks.score: retries only apply to a scheduled task"),
    (lambda t: "pipelines:\n  p: {}\n" + t.replace("pipelines:\n", ""),
     "orchzip.yaml:2: pipelines.p: give a pipeline either model: FILE.onnx or steps: [MODEL, ...]"),
    (lambda t: t.replace("    no_env: true", "    no_env: true\n    continuously: true"),
     "orchzip.yaml:21: tasks.nightly: a task runs on a schedule or continuously, not both"),
    (lambda t: t.replace("    timeout: 600", "    continuously: true\n    timeout: 600"),
     "orchzip.yaml:17: tasks.score: timeout does not apply to a continuous task"),
    (lambda t: t.replace("    timeout: 600", "    timeout: 600\n    backoff: 2"),
     "orchzip.yaml:17: tasks.score: backoff only apply to a continuous task: add continuously: true"),
    (lambda t: t.replace("    timeout: 600", "    timeout: 600\n    log_max_bytes: lots"),
     "orchzip.yaml:21: tasks.score.log_max_bytes: must be a size in bytes such as 16777216, 16MiB or 512k"),
    (lambda t: t.replace("    timeout: 600", "    timeout: 600\n    wallaroo_version: 1999.1"),
     "orchzip.yaml:21: tasks.score.wallaroo_version: unknown Wallaroo version 1999.1; orchzip knows"),
])
def test_schema_errors_name_file_line_and_key(project, edit, expected):
    path = project / "orchzip.yaml"
    path.write_text(edit(path.read_text()))
    done = orchzip("apply", "--dry-run", cwd=project)
    assert done.returncode == 2, done
    assert expected in done.stderr, done.stderr
    assert str(path) in done.stderr and "Traceback" not in done.stderr
    assert not (project / ".orchzip").exists()


def test_several_schema_errors_are_listed_together(project):
    path = project / "orchzip.yaml"
    path.write_text(PROJECT.replace("tz: Europe/Berlin", "tz: Nowhere").replace("overlap: allow", "overlap: sometimes")
                    + "extra: 1\n")
    done = orchzip("apply", cwd=project)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "orchzip: error: 3 problems:"
    assert any("orchzip.yaml:28: extra: unknown key (allowed here: version, workspaces" in l for l in lines)
    assert any("orchzip.yaml:25: tasks.nightly.overlap: Input should be 'forbid', 'allow' or 'replace'" in l
               for l in lines)


def _task_id(project, name):
    tasks = json.loads(ok(orchzip("tasks", "list", "--json", cwd=project)).stdout)
    return [t["id"] for t in tasks if t["name"] == name and t["status"] not in ("killed", "pending_kill")][0]


def test_commands_in_a_subfolder_use_the_project_state_and_the_state_dir_option_wins(project, tmp_path):
    ok(orchzip("apply", cwd=project))
    listed = ok(orchzip("pipelines", "list", "--json", cwd=project / "orch"))
    assert [p["name"] for p in json.loads(listed.stdout)] == ["houseprice"]
    other = tmp_path / "elsewhere"
    listed = ok(orchzip("--state-dir", str(other), "pipelines", "list", "--json", cwd=project / "orch"))
    assert json.loads(listed.stdout) == []
    listed = ok(orchzip("pipelines", "list", "--json", cwd=project / "orch", env={"ORCHZIP_STATE_DIR": str(other)}))
    assert json.loads(listed.stdout) == []
    assert not (project / "orch" / ".orchzip").exists()


@pytest.mark.timeout(600)
def test_init_then_apply_then_run_predicts_in_the_task_environment(tmp_path):
    import pyarrow.parquet as pq
    ok(orchzip("init", "shop", cwd=tmp_path))
    project = tmp_path / "shop"
    assert (project / "orchzip.yaml").is_file() and (project / "orchestrations" / "predict" / "main.py").is_file()
    ok(orchzip("apply", cwd=project))
    # A real run: main.py in the environment built from the orchestration's requirements.txt.
    run = json.loads(ok(orchzip("run", "predict", "--json", cwd=project, timeout=540)).stdout)
    assert run["status"] == "success" and run["rows_written"] == 8
    table = pq.read_table(project / "data" / "predictions.parquet").to_pydict()
    # The starter model is linear: 50,000 + 25,000 bedrooms + 15,000 bathrooms + 150 sqft - 1,000 age.
    assert table["out_variable"][0] == [pytest.approx(50_000 + 25_000 * 3 + 15_000 * 2 + 150 * 1500 - 1_000 * 10)]
    assert table["in_bedrooms"] == [3, 2, 4, 5, 1, 3, 4, 2]
    assert "nothing to change" in ok(orchzip("apply", cwd=project)).stdout


def test_init_refuses_to_overwrite_a_project(tmp_path):
    ok(orchzip("init", cwd=tmp_path))
    again = orchzip("init", cwd=tmp_path)
    assert again.returncode == 2 and "already has" in again.stderr and "orchzip.yaml" in again.stderr


def test_the_example_orchestrations_project_applies_and_exports_what_it_declares(tmp_path):
    examples = os.path.join(REPO, "orchestrations")
    state = tmp_path / "state"
    applied = ok(orchzip("--state-dir", str(state), "apply", "--json", cwd=examples))
    assert json.loads(applied.stdout)["create"] == 10
    exported = ok(orchzip("--state-dir", str(state), "export", "-o", "-", cwd=examples)).stdout
    # the YAML merge key (<<: *bigquery_key) was read: both BigQuery connections have the key's fields
    assert exported.count("private_key: ${BQ_PRIVATE_KEY}") == 2 and "table: house_results" in exported
    assert f"model: {os.path.join(REPO, 'examples', 'houseprice', 'model.onnx')}" in exported  # outside: absolute
    assert "path: houseprice_local" in exported and "timeout: 600\n" in exported
    assert not os.path.exists(os.path.join(examples, ".orchzip"))


def test_read_only_commands_create_no_state_and_missing_names_say_where_they_looked(tmp_path):
    for argv in (("runs", "list"), ("tasks", "list"), ("connections", "list"), ("pipelines", "list"),
                 ("workspaces", "list"), ("runs", "logs", "--last")):
        orchzip(*argv, cwd=tmp_path)
    assert not (tmp_path / ".orchzip").exists()
    missing = orchzip("connections", "get", "houses", cwd=tmp_path)
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert f"(looked in the state at {tmp_path / '.orchzip'}, which does not exist yet)" in missing.stderr
    assert not (tmp_path / ".orchzip").exists()
    ok(orchzip("workspaces", "create", "team", cwd=tmp_path))
    missing = orchzip("tasks", "status", "abc", cwd=tmp_path)
    assert missing.stderr.rstrip().endswith(f"(looked in the state at {tmp_path / '.orchzip'})")


MODELS_PROJECT = """\
models:
  houseprice:
    file: model.onnx
  scaler:
    file: scale.onnx
    input_schema: {x: "list<float32>"}
    requirements: [numpy]
pipelines:
  chained:
    steps: [houseprice, scaler]
  pinned:
    steps: ["scaler:1"]
  plain:
    model: model.onnx
"""


def test_models_and_pipeline_steps_apply_update_to_new_versions_and_export_back(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from support.onnx_models import scaling_model
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(EXAMPLE_MODEL, root / "model.onnx")
    scaling_model(root / "scale.onnx", 2.0)
    (root / "orchzip.yaml").write_text(MODELS_PROJECT)
    first = ok(orchzip("apply", cwd=root)).stdout
    assert "+ model houseprice" in first and "+ pipeline chained" in first
    assert "nothing to change" in ok(orchzip("apply", cwd=root)).stdout
    pipelines = {p["name"]: p["steps"] for p in json.loads(ok(orchzip("pipelines", "list", "--json", cwd=root)).stdout)}
    assert pipelines == {"chained": ["houseprice:1", "scaler:1"], "pinned": ["scaler:1"], "plain": []}

    scaling_model(root / "scale.onnx", 3.0)  # a changed file is the model's next version
    second = ok(orchzip("apply", cwd=root)).stdout
    assert "~ model scaler: sha256 changed" in second and "~ pipeline chained: steps changed" in second
    assert "pinned" not in second
    pipelines = {p["name"]: p["steps"] for p in json.loads(ok(orchzip("pipelines", "list", "--json", cwd=root)).stdout)}
    assert pipelines["chained"] == ["houseprice:1", "scaler:2"] and pipelines["pinned"] == ["scaler:1"]
    assert "nothing to change" in ok(orchzip("apply", cwd=root)).stdout

    exported = ok(orchzip("export", "-o", "-", cwd=root)).stdout
    assert "file: scale.onnx" in exported and "x: list<float>" in exported and "- numpy" in exported
    assert "- scaler:1" in exported and "model: model.onnx" in exported
    (root / "exported.yaml").write_text(exported)
    other = tmp_path / "other-state"
    ok(orchzip("--state-dir", str(other), "apply", "-f", "exported.yaml", cwd=root))
    again = ok(orchzip("--state-dir", str(other), "export", "-o", "-", cwd=root)).stdout
    assert again.replace("- scaler:1", "- scaler") == exported.replace("- scaler:1", "- scaler")


CONVERTED_PROJECT = """\
models:
  diabetes:
    file: model.pkl
    framework: sklearn
    input_schema: {inputs: "fixed_size_list<float64>[4]"}
    output_schema: {predictions: float64}
    convert_to_onnx: true
pipelines:
  scored: {steps: [diabetes]}
"""

TRAIN_LINEAR = ("import pickle, sys, numpy as np; from sklearn.linear_model import LinearRegression; "
                "x = np.random.default_rng(0).normal(size=(50, 4)); "
                "pickle.dump(LinearRegression().fit(x, x @ [1.0, 2.0, 3.0, 4.0]), open(sys.argv[1], 'wb'))")


@pytest.mark.timeout(900)
def test_a_model_declared_convert_to_onnx_uploads_converted_applies_once_and_exports_back(tmp_path):
    from orchzip.runtime import model_envs
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run([model_envs.ensure_model_env("sklearn"), "-c", TRAIN_LINEAR, str(root / "model.pkl")],
                   check=True, capture_output=True, timeout=300)
    (root / "orchzip.yaml").write_text(CONVERTED_PROJECT)
    assert "+ model diabetes" in ok(orchzip("apply", cwd=root, timeout=600)).stdout
    model = json.loads(ok(orchzip("models", "get", "diabetes", "--json", cwd=root)).stdout)
    assert (model["version"], model["framework"]) == (1, "onnx") and model["path"].endswith("model.onnx")
    assert "nothing to change" in ok(orchzip("apply", cwd=root)).stdout

    exported = ok(orchzip("export", "-o", "-", cwd=root)).stdout
    assert "convert_to_onnx: true" in exported and "framework: sklearn" in exported
    assert "tensor_column" not in exported
    (root / "exported.yaml").write_text(exported)
    other = tmp_path / "other-state"
    ok(orchzip("--state-dir", str(other), "apply", "-f", "exported.yaml", cwd=root, timeout=600))
    assert "nothing to change" in ok(orchzip("--state-dir", str(other), "apply", "-f", "exported.yaml", cwd=root)).stdout
    assert ok(orchzip("--state-dir", str(other), "export", "-o", "-", cwd=root)).stdout == exported

    # Dropping the key uploads the same file natively, as the model's next version.
    (root / "orchzip.yaml").write_text(CONVERTED_PROJECT.replace("    convert_to_onnx: true\n", ""))
    changed = ok(orchzip("apply", cwd=root, timeout=600)).stdout
    assert "~ model diabetes" in changed and "convert_to_onnx" in changed and "sha256" not in changed
    model = json.loads(ok(orchzip("models", "get", "diabetes", "--json", cwd=root)).stdout)
    assert (model["version"], model["framework"]) == (2, "sklearn")
    assert "nothing to change" in ok(orchzip("apply", cwd=root)).stdout


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace("framework: sklearn", "framework: onnx"),
     "orchzip.yaml:2: models.diabetes: convert_to_onnx converts sklearn and xgboost models, not onnx ones: "
     "set framework: sklearn or xgboost, or remove convert_to_onnx"),
    (lambda t: t.replace("    framework: sklearn\n", ""),
     "orchzip.yaml:2: models.diabetes: convert_to_onnx converts sklearn and xgboost models, not onnx ones"),
    (lambda t: t.replace("    convert_to_onnx: true", "    convert_to_onnx: true\n    tensor_column: inputs"),
     "orchzip.yaml:2: models.diabetes: tensor_column does not apply with convert_to_onnx"),
    (lambda t: t.replace("convert_to_onnx: true", "convert_to_onnx: sometimes"),
     "orchzip.yaml:7: models.diabetes.convert_to_onnx: Input should be a valid boolean"),
])
def test_convert_to_onnx_is_checked_at_the_door_in_one_line(tmp_path, edit, expected):
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")
    (tmp_path / "orchzip.yaml").write_text(edit(CONVERTED_PROJECT))
    refused = orchzip("apply", "--dry-run", cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused
    assert len(refused.stderr.strip().splitlines()) == 1 and expected in refused.stderr, refused.stderr
    assert not (tmp_path / ".orchzip").exists()


def test_steps_must_name_declared_models(tmp_path):
    (tmp_path / "orchzip.yaml").write_text("models: {}\npipelines:\n  p:\n    steps: [nothing, 'x:y']\n")
    refused = orchzip("apply", cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "orchzip.yaml:4: pipelines.p.steps[0]: model 'nothing' is not declared under models:" in refused.stderr
    (tmp_path / "orchzip.yaml").write_text("pipelines:\n  q: {}\n")
    refused = orchzip("apply", cwd=tmp_path)
    assert refused.returncode == 2
    assert "orchzip.yaml:2: pipelines.q: give a pipeline either model: FILE.onnx or steps: [MODEL, ...]" in refused.stderr


CONTINUOUS = """\
  watch:
    orchestration: quitter
    continuously: true
    backoff: 0.05
    max_backoff: 0.2
    crash_loop_after: 2
    log_max_bytes: 1MiB
    no_env: true
"""


@pytest.mark.timeout(240)
def test_a_continuous_task_applies_exports_and_runs_as_run_continuously(project):
    (project / "quitter").mkdir()
    (project / "quitter" / "main.py").write_text("print('up', flush=True)\n")
    text = PROJECT.replace("orchestrations:\n", "orchestrations:\n  quitter: {path: quitter}\n") + CONTINUOUS
    (project / "orchzip.yaml").write_text(text)
    applied = ok(orchzip("apply", cwd=project)).stdout
    assert "+ task watch (continuous)" in applied
    assert "nothing to change" in ok(orchzip("apply", cwd=project)).stdout
    exported = ok(orchzip("export", "-o", "-", cwd=project)).stdout
    watch = exported.split("  watch:\n")[1]
    for line in ("continuously: true", "backoff: 0.05", "max_backoff: 0.2", "crash_loop_after: 2",
                 "log_max_bytes: 1048576", "no_env: true"):
        assert f"    {line}\n" in watch, exported
    # The state's own changes read back as the same file: a copy of the export plans nothing.
    (project / "exported.yaml").write_text(exported)
    assert "nothing to change" in ok(orchzip("apply", "-f", "exported.yaml", cwd=project)).stdout

    env = {k: v for k, v in os.environ.items() if k != "ORCHZIP_STATE_DIR"}
    supervisor = subprocess.Popen([sys.executable, "-m", "orchzip", "run", "watch", "--json"], cwd=str(project),
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        from tests.support.waiting import wait_for
        task = wait_for(lambda: next((t for t in json.loads(ok(orchzip("tasks", "list", "--json", cwd=project)).stdout)
                                      if t["name"] == "watch" and t["status"] == "crash_loop"), None),
                        120, "the continuous task to crash_loop")
        assert task["kind"] == "continuous" and task["log_max_bytes"] == 1048576
        ok(orchzip("tasks", "kill", task["id"], cwd=project))
        out, err = supervisor.communicate(timeout=60)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.communicate(timeout=30)
    assert supervisor.returncode == 0, err
    assert json.loads(out)["status"] == "killed"
