"""The stand-in's SDK surface beyond the tutorials' main path, in a task-like subprocess."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import GBR_MODEL, RF_MODEL, XTEST_1K
from orchzip.runtime.environments import STANDIN_DIR


def run_task(tmp_path, code, args=None):
    context = {"task_id": "t1", "run_id": "r1", "args": args or {}, "workspaces": ["team"],
               "connections": {"houses": {"id": 7, "type": "BIGQUERY", "created_at": "2026-01-01T00:00:00+00:00",
                                          "workspace_names": ["team"],
                                          "details": {"dataset": "d", "table": "t", "private_key": "${KEY}"}}},
               "pipelines": {"houseprice": {"model": RF_MODEL, "tensor_column": None}}}
    (tmp_path / "context.json").write_text(json.dumps(context))
    (tmp_path / "main.py").write_text(textwrap.dedent(code))
    env = dict(os.environ, ORCHZIP_CONTEXT=str(tmp_path / "context.json"), WALLAROO_TASK_ID="t1",
               PYTHONPATH=STANDIN_DIR, KEY="s3cret")
    bootstrap = os.path.join(os.path.dirname(STANDIN_DIR), "task_bootstrap.py")
    return subprocess.run([sys.executable, bootstrap, str(tmp_path / "main.py")], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(60)
def test_connections_give_details_with_variables_filled_in_and_hide_them_in_repr(tmp_path):
    done = run_task(tmp_path, """
        import wallaroo
        wl = wallaroo.Client()
        c = wl.get_connection("houses")
        print(c.name(), c.connection_type(), c.id(), c.workspace_names(), c.details()["private_key"])
        print(repr(c), [x.name() for x in wl.list_connections()])
        print(wl.task_args(), wl.in_task())
    """, args={"k": [1, 2]})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "houses BIGQUERY 7 ['team'] s3cret"
    assert "s3cret" not in lines[1] and "['houses']" in lines[1]
    assert lines[2] == "{'k': [1, 2]} True"


@pytest.mark.timeout(60)
def test_an_unknown_connection_is_one_line_listing_the_known_ones(tmp_path):
    done = run_task(tmp_path, "import wallaroo\nwallaroo.Client().get_connection('nope')\n")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "orchzip: error: Failed to get connection: unknown connection 'nope' (known: houses); "
        "create it with: orchzip connections create nope --type TYPE --details JSON"]


@pytest.mark.timeout(60)
def test_workspaces_can_be_listed_created_and_made_current(tmp_path):
    done = run_task(tmp_path, """
        import wallaroo
        wl = wallaroo.Client()
        print(sorted(w.name() for w in wl.list_workspaces()))
        ws = wl.create_workspace("new-one")
        wl.set_current_workspace(ws)
        print(wl.get_current_workspace().name(), wl.get_workspace("team").name())
        print(wallaroo.Client().get_current_workspace().name())  # every client sees the same state
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['default', 'team']", "new-one team", "new-one"]


@pytest.mark.timeout(60)
def test_a_pipeline_built_from_an_uploaded_model_deploys_and_infers(tmp_path):
    done = run_task(tmp_path, f"""
        import pandas as pd, wallaroo
        from wallaroo.framework import Framework
        from wallaroo.object import EntityNotFoundError, DeploymentError
        wl = wallaroo.Client()
        try:
            wl.pipelines_by_name("gbr")
        except EntityNotFoundError as err:
            print("not found:", err)
        model = wl.upload_model("gbr-model", {GBR_MODEL!r}, framework=Framework.ONNX)
        pipeline = wl.build_pipeline("gbr")
        try:
            pipeline.deploy()
        except DeploymentError as err:
            print("empty:", err)
        config = wallaroo.DeploymentConfigBuilder().replica_count(1).cpus(0.5).memory("1Gi").build()
        pipeline.add_model_step(model).deploy(deployment_config=config)
        houses = pd.read_json({XTEST_1K!r}, orient="records").head(3)
        print(pipeline.infer(houses)["out.variable"].map(lambda v: round(float(v[0]))).tolist())
        print(wl.get_model("gbr-model").version(), wl.get_model("rf_model").name(), config["cpus"])
        print(wl.pipelines_by_name("gbr")[0].steps())
        pipeline.undeploy()
        pipeline.infer(houses)
    """)
    assert done.returncode == 2, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "not found: Pipeline not found: {'pipeline_name': 'gbr'}"
    assert out[1].startswith("empty: Model failed to deploy: pipeline 'gbr' has no model step")
    assert len(json.loads(out[2])) == 3
    assert out[3] == "1 rf_model 0.5"
    assert "gbr-model" in out[4]
    assert done.stderr.strip() == ("orchzip: error: Pipeline gbr is not deployed: "
                                   "call pipeline.deploy() before pipeline.infer()")


@pytest.mark.timeout(60)
def test_other_frameworks_and_missing_modules_are_named_as_not_available_locally(tmp_path):
    done = run_task(tmp_path, """
        import wallaroo
        from wallaroo.framework import Framework
        try:
            import wallaroo.assay_config
        except ImportError as err:
            print(err)
        print(hasattr(wallaroo.Client(), "list_assays"))
        wallaroo.Client().upload_model("m", "model.pt", framework=Framework.PYTORCH)
    """)
    assert done.returncode == 2
    assert done.stdout.splitlines()[0].startswith("module wallaroo.assay_config is not available in an orchzip local run")
    assert done.stdout.splitlines()[1] == "False"
    assert "framework pytorch" in done.stderr and "not available in an orchzip local run" in done.stderr
    assert "Traceback" not in done.stderr


def test_orchzips_own_environment_does_not_see_the_standin():
    code = "import importlib.util as u; s = u.find_spec('wallaroo'); print(s.origin if s else None)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "wallaroo_standin" not in done.stdout


@pytest.mark.timeout(60)
def test_parallel_infer_on_arrow_marks_failed_batches_and_an_all_failed_run_is_only_errors(tmp_path):
    done = run_task(tmp_path, f"""
        import asyncio, pandas as pd, pyarrow as pa, wallaroo
        pipeline = wallaroo.Client().pipelines_by_name("houseprice")[0]
        houses = pd.read_json({XTEST_1K!r}, orient="records").head(5)
        broken = houses.copy()
        broken.at[0, "tensor"] = [1.0]
        table = asyncio.run(pipeline.parallel_infer(pa.Table.from_pandas(broken), batch_size=2, num_parallel=2))
        print(table.num_rows, table.column_names[-1], table.column("error").to_pylist()[:3])
        print(table.column("out.variable").null_count, table.column("out.variable")[2].as_py() is not None)
        bad = pd.DataFrame({{"tensor": [[1.0]] * 3}})
        errors = asyncio.run(pipeline.parallel_infer(bad, batch_size=2))
        print(list(errors.columns), len(errors))
    """)
    assert done.returncode == 0, done.stderr
    first, second, third = done.stdout.splitlines()
    rows, last, errors = first.split(" ", 2)
    assert rows == "5" and last == "error"
    assert errors.startswith("[") and errors.count("''") == 1 and "18" in errors  # rows 0-1 failed, row 2 did not
    assert second == "2 True"
    assert third == "['error'] 2"  # one row per failed batch, as the SDK gives it
