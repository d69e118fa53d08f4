"""Pipelines of several model steps: each step's outputs feed the next, the result keeps Wallaroo's shape."""

import json
import os

import duckdb
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest

from conftest import REPO, RF_MODEL, XTEST_1K, reference_rows
from orchzip_shim.errors import BadInput, ModelError
from orchzip_shim.models import OnnxModel, wallaroo_result
from orchzip_shim.pipelines import PipelineModel, local_pipeline
from support.onnx_models import scaling_model

pytestmark = pytest.mark.timeout(300)


def houses(n=50):
    rows = reference_rows()[:n]
    return pa.RecordBatch.from_pydict({"tensor": pa.array([r["tensor"] for r in rows], pa.list_(pa.float64()))})


def rf_predictions(batch):
    x = np.array(batch.column(0).to_pylist(), dtype=np.float32)
    return ort.InferenceSession(RF_MODEL).run(None, {"float_input": x})[0].ravel()


def spec(name, path, version="1", **extra):
    return {"name": name, "version": version, "framework": "onnx", "path": path, "sha256": None,
            "tensor_column": None, "input_schema": None, "output_schema": None, "python": None, **extra}


def infer_records(server, pipeline, rows):
    """``rows`` inferred through `orchzip serve`'s pipeline endpoint as pandas records: the records."""
    answer = server.post(f"/v1/api/pipelines/infer/{pipeline}-1/{pipeline}", data=json.dumps(rows),
                         headers={**server.headers, "Content-Type": "application/json; format=pandas-records"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_two_onnx_steps_chain_and_keep_the_original_input(tmp_path):
    scaler = scaling_model(tmp_path / "scale.onnx", 2.0, input_name="z", output_name="scaled")
    batch = houses()
    model = PipelineModel([spec("houseprice", RF_MODEL), spec("scaler", scaler)], name="p",
                          anomaly_column="check_failures")
    result = model.infer_batch(batch, row_offset=0)
    assert result.schema.names == ["time", "in.tensor", "out.scaled", "check_failures"]
    assert result.column("in.tensor").equals(batch.column(0))
    scaled = np.array([v[0] for v in result.column("out.scaled").to_pylist()])
    np.testing.assert_allclose(scaled, 2 * rf_predictions(batch), rtol=1e-6)
    assert result.column("check_failures").to_pylist() == [0] * batch.num_rows
    three = PipelineModel([spec("houseprice", RF_MODEL), spec("s", scaler), spec("s", scaler, "2")], name="p")
    tripled = three.process(batch)
    assert tripled.schema.names == ["scaled"]
    np.testing.assert_allclose(np.array([v[0] for v in tripled.column(0).to_pylist()]), 4 * rf_predictions(batch),
                               rtol=1e-6)
    model.close()
    three.close()


def test_one_onnx_step_is_the_model_itself_with_the_same_results():
    batch = houses(20)
    single = local_pipeline("houses", {"steps": [spec("houseprice", RF_MODEL)]})
    assert isinstance(single, OnnxModel)
    legacy = local_pipeline("houses", {"model": RF_MODEL, "tensor_column": None})
    result = single.infer_batch(batch)
    assert result.schema == legacy.infer_batch(batch).schema
    outputs = single.process(batch)
    assert outputs.schema.names == ["variable"]
    rebuilt = wallaroo_result(batch, {"variable": outputs.column(0)})
    assert rebuilt.drop_columns(["time"]).equals(result.drop_columns(["time"]))


def test_a_step_that_refuses_its_input_is_named(tmp_path):
    wide = scaling_model(tmp_path / "wide.onnx", 2.0, width=3)
    model = PipelineModel([spec("houseprice", RF_MODEL), spec("wide", wide, "4")], name="p")
    with pytest.raises(BadInput, match=r"^pipeline 'p' step 2 \(wide:4\): row 0 of column 'x' has 1 values; "
                                       r"model 'wide' expects 3$"):
        model.infer_batch(houses(3))
    with pytest.raises(ModelError, match="^model file .*missing.onnx of pipeline 'missing' does not exist"):
        PipelineModel([spec("houseprice", RF_MODEL), spec("missing", str(tmp_path / "missing.onnx"))], name="p")


@pytest.fixture
def cli(orchzip_cli):
    def run(*argv, **kwargs):
        result = orchzip_cli(*argv, **kwargs)
        assert result.code == 0, result
        return result
    return run


def test_orchzip_run_infers_through_a_pipeline_of_registered_models(cli, tmp_path):
    """The embedded orchestration, unchanged, through houseprice -> scaler (DuckDB in and out)."""
    database = str(tmp_path / "houses.duckdb")
    with duckdb.connect(database) as db:
        db.execute("CREATE TABLE houses (tensor DOUBLE[])")
        db.executemany("INSERT INTO houses VALUES (?)", [[r["tensor"]] for r in reference_rows()[:300]])
    cli("connections", "create", "houses", "--type", "DUCKDB", "--details",
        json.dumps({"path": database, "table": "houses"}))
    cli("connections", "create", "results", "--type", "DUCKDB", "--details",
        json.dumps({"path": database, "table": "results"}))
    cli("models", "upload", "houseprice", RF_MODEL)
    cli("models", "upload", "scaler", scaling_model(tmp_path / "s.onnx", 0.5))
    cli("pipelines", "create", "halved", "--step", "houseprice", "--step", "scaler")
    cli("build", os.path.join(REPO, "orchestrations", "houseprice_local"), "-o", str(tmp_path / "dist"))
    cli("run", str(tmp_path / "dist" / "houseprice_local.zip"), "--no-env", "--arg", "input_connection=houses",
        "--arg", "output_connection=results", "--arg", "pipeline=halved")
    with duckdb.connect(database) as db:
        columns = [r[0] for r in db.execute("DESCRIBE results").fetchall()]
        halved = [r[0][0] for r in db.execute("SELECT out_scaled FROM results ORDER BY rowid").fetchall()]
    assert columns == ["time", "in_tensor", "out_scaled", "anomaly_count"]
    np.testing.assert_allclose(halved, 0.5 * rf_predictions(houses(300)), rtol=1e-6)


def test_a_tutorial_style_orchestration_builds_changes_and_infers_a_multistep_pipeline(cli, tmp_path):
    cli("models", "upload", "houseprice", RF_MODEL)
    scale2 = scaling_model(tmp_path / "scale2.onnx", 2.0, input_name="variable")
    scale3 = scaling_model(tmp_path / "scale3.onnx", 3.0)
    cli("build", os.path.join(REPO, "tests", "fixtures", "wallaroo", "multistep_pipeline"), "-o", str(tmp_path))
    done = cli("run", str(tmp_path / "multistep_pipeline.zip"), "--no-env", "--arg", f"houses={XTEST_1K}",
               "--arg", f"scale2={scale2}", "--arg", f"scale3={scale3}")
    lines = dict(line.split(": ", 1) for line in done.out.splitlines() if ": " in line)
    report = {k: json.loads(v) for k, v in lines.items() if k in (
        "versions", "steps", "columns", "doubled", "tripled", "one step", "parallel", "empty", "undeployed")}
    predicted = [round(float(p), 2) for p in rf_predictions(houses(5))]
    assert report["versions"] == ["1", "1", "2"]
    assert report["steps"] == ["houseprice", "scaler"]
    assert report["columns"] == ["time", "in.tensor", "out.scaled", "anomaly.count"]
    np.testing.assert_allclose(report["doubled"], [2 * p for p in predicted], rtol=1e-6)
    np.testing.assert_allclose(report["tripled"], [3 * p for p in predicted], rtol=1e-6)
    assert report["one step"][0] == ["time", "in.tensor", "out.variable", "anomaly.count"]
    np.testing.assert_allclose(report["one step"][1], predicted, rtol=1e-6)
    assert report["parallel"] == report["doubled"]
    assert report["empty"] == "Model failed to deploy"
    assert report["undeployed"] == "Pipeline houseprice-scaled is not deployed"


def test_a_task_uploads_a_python_model_and_infers_through_it_after_an_onnx_step(cli, tmp_path):
    cli("models", "upload", "houseprice", RF_MODEL)
    post = tmp_path / "post.py"
    post.write_text(POST_PROCESSING)
    scale2 = scaling_model(tmp_path / "scale2.onnx", 2.0, input_name="variable")
    scale3 = scaling_model(tmp_path / "scale3.onnx", 3.0)
    cli("build", os.path.join(REPO, "tests", "fixtures", "wallaroo", "multistep_pipeline"), "-o", str(tmp_path))
    pids = tmp_path / "pids.py"
    pids.write_text(PIDS)
    done = cli("run", str(tmp_path / "multistep_pipeline.zip"), "--no-env", "--arg", f"houses={XTEST_1K}",
               "--arg", f"scale2={scale2}", "--arg", f"scale3={scale3}", "--arg", f"post={post}",
               "--arg", f"pids={pids}", "--arg", "rows=12")
    lines = dict(line.split(": ", 1) for line in done.out.splitlines() if ": " in line)
    columns, price_k, expensive = json.loads(lines["post"])
    predicted = rf_predictions(houses(12))
    assert columns == ["time", "in.tensor", "out.price_k", "out.expensive", "anomaly.count"]
    np.testing.assert_allclose(price_k, np.round(predicted / 1000.0, 2), atol=0.006)
    assert expensive == [int(p > 500_000) for p in predicted]
    assert json.loads(lines["post parallel"]) == price_k
    # 12 batches of one row, 3 at a time: three worker processes, none of them the task itself
    assert json.loads(lines["lanes"]) == [12, 3, False]


PIDS = '''
import os

import numpy as np
from mac.types import InferenceData


def process_data(input_data: InferenceData) -> InferenceData:
    return {"pid": np.full(len(input_data["tensor"]), os.getpid(), dtype=np.int64)}
'''


def test_serve_infers_through_a_multistep_pipeline(tmp_path):
    import sys
    sys.path.insert(0, os.path.join(REPO, "tests", "fixtures", "serve"))
    from serve_helpers import Server, orchzip

    state = tmp_path / "state"
    orchzip(str(state), "models", "upload", "houseprice", RF_MODEL)
    orchzip(str(state), "models", "upload", "scaler", scaling_model(tmp_path / "s.onnx", 2.0))
    orchzip(str(state), "pipelines", "create", "scaled", "--step", "houseprice", "--step", "scaler")
    server = Server(state, tmp_path / "serve.log", "--no-env").start()
    try:
        rows = reference_rows()[:20]
        records = infer_records(server, "scaled", rows)
        assert records[0]["in"] == {"tensor": rows[0]["tensor"]} and set(records[0]["out"]) == {"scaled"}
        np.testing.assert_allclose([r["out"]["scaled"][0] for r in records], 2 * rf_predictions(houses(20)),
                                   rtol=1e-5)
        last = json.loads(records[0]["metadata"]["last_model"])
        assert last["model_name"] == "scaler" and len(last["model_sha"]) == 64
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, houses(5).schema) as writer:
            writer.write_batch(houses(5))
        arrow = server.post("/v1/api/pipelines/infer/scaled", data=sink.getvalue().to_pybytes(),
                            headers={**server.headers, "Content-Type": "application/vnd.apache.arrow.file"})
        assert arrow.status_code == 200, arrow.text
        table = pa.ipc.open_file(pa.py_buffer(arrow.content)).read_all()
        assert table.column_names == ["time", "in.tensor", "out.scaled", "anomaly.count"]
    finally:
        server.stop()


POST_PROCESSING = '''
import numpy as np
from mac.types import InferenceData


def process_data(input_data: InferenceData) -> InferenceData:
    prices = input_data["variable"]
    return {"price_k": prices / 1000.0, "expensive": (prices[:, 0] > 500_000).astype(np.int64)}
'''


def priced_pipeline(cli, tmp_path, n):
    """``n`` house rows in DuckDB, and pipeline ``priced``: the ONNX model, then POST_PROCESSING.

    Returns the database's path and the Python model's upload record.
    """
    database = str(tmp_path / "houses.duckdb")
    with duckdb.connect(database) as db:
        db.execute("CREATE TABLE houses (tensor DOUBLE[])")
        db.executemany("INSERT INTO houses VALUES (?)", [[r["tensor"]] for r in reference_rows()[:n]])
    for name, table in (("houses", "houses"), ("results", "results")):
        cli("connections", "create", name, "--type", "DUCKDB", "--details", json.dumps({"path": database, "table": table}))
    post = tmp_path / "post.py"
    post.write_text(POST_PROCESSING)
    cli("models", "upload", "houseprice", RF_MODEL)
    uploaded = cli("models", "upload", "post", str(post), "--framework", "python", "--json",
                   "--input-schema", '{"variable": "fixed_size_list<float32>[1]"}',
                   "--output-schema", '{"price_k": "fixed_size_list<float64>[1]", "expensive": "int64"}').json()
    cli("pipelines", "create", "priced", "--step", "houseprice", "--step", "post")
    return database, uploaded


def run_priced(cli, tmp_path):
    cli("build", os.path.join(REPO, "orchestrations", "houseprice_local"), "-o", str(tmp_path / "dist"))
    cli("run", str(tmp_path / "dist" / "houseprice_local.zip"), "--no-env", "--arg", "input_connection=houses",
        "--arg", "output_connection=results", "--arg", "pipeline=priced")


def test_a_python_post_processing_step_after_an_onnx_model_runs_through_orchzip_run(cli, orchzip_cli, tmp_path):
    database, uploaded = priced_pipeline(cli, tmp_path, 200)
    assert uploaded["framework"] == "python" and uploaded["python"]
    no_schema = orchzip_cli("models", "upload", "post", str(tmp_path / "post.py"), "--framework", "python")
    assert no_schema.code == 2 and len(no_schema.err.splitlines()) == 1 and "input_schema" in no_schema.err
    run_priced(cli, tmp_path)
    with duckdb.connect(database) as db:
        columns = [r[0] for r in db.execute("DESCRIBE results").fetchall()]
        rows = db.execute("SELECT out_price_k[1], out_expensive FROM results ORDER BY rowid").fetchall()
    assert columns == ["time", "in_tensor", "out_price_k", "out_expensive", "anomaly_count"]
    predicted = rf_predictions(houses(200))
    np.testing.assert_allclose([r[0] for r in rows], predicted / 1000.0, rtol=1e-6)
    assert [r[1] for r in rows] == [int(p > 500_000) for p in predicted]



def test_a_step_whose_environment_cache_was_cleared_gets_it_rebuilt_when_a_task_runs(cli, state_dir, tmp_path):
    # As after `rm -rf ~/.cache/orchzip` or copying the state to another machine: the stored
    # Python of the model's environment is gone; the run rebuilds (here: finds) it instead of failing.
    import sqlite3
    database, _ = priced_pipeline(cli, tmp_path, 20)
    with sqlite3.connect(os.path.join(state_dir, "state.db")) as db:
        assert db.execute("UPDATE models SET python = ? WHERE name = 'post'", (str(tmp_path / "gone" / "python"),)).rowcount == 1
    run_priced(cli, tmp_path)
    with duckdb.connect(database) as db:
        rows = db.execute("SELECT out_price_k[1] FROM results ORDER BY rowid").fetchall()
    np.testing.assert_allclose([r[0] for r in rows], rf_predictions(houses(20)) / 1000.0, rtol=1e-6)

def run_standin_task(tmp_path, code):
    """``code`` as a task's main.py with the wallaroo stand-in, in a context naming orchzip's Python."""
    import subprocess
    import sys
    import textwrap
    from orchzip.runtime.environments import STANDIN_DIR
    context = {"task_id": "t1", "run_id": "r1", "args": {}, "connections": {}, "pipelines": {},
               "orchzip_python": sys.executable}
    (tmp_path / "context.json").write_text(json.dumps(context))
    (tmp_path / "main.py").write_text(textwrap.dedent(code))
    env = dict(os.environ, ORCHZIP_CONTEXT=str(tmp_path / "context.json"), WALLAROO_TASK_ID="t1",
               PYTHONPATH=STANDIN_DIR)
    bootstrap = os.path.join(os.path.dirname(STANDIN_DIR), "task_bootstrap.py")
    return subprocess.run([sys.executable, bootstrap, str(tmp_path / "main.py")], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120)


def test_a_model_a_task_uploads_is_checked_at_the_door_in_one_line(tmp_path):
    (tmp_path / "post.py").write_text(POST_PROCESSING)
    (tmp_path / "plain.py").write_text("def process_data(input_data):\n    return input_data\n")
    done = run_standin_task(tmp_path, """
        import pyarrow as pa, wallaroo
        from wallaroo.framework import Framework
        wl = wallaroo.Client()
        schema = pa.schema([pa.field("variable", pa.list_(pa.float32(), 1))])
        for path, kwargs in (("post.py", {}), ("plain.py", {"input_schema": schema, "output_schema": schema}),
                             ("missing.py", {"input_schema": schema, "output_schema": schema})):
            try:
                wl.upload_model("post", path, framework=Framework.PYTHON, **kwargs)
            except Exception as err:
                print(type(err).__name__, str(err).replace(str(wl.task_args()), ""))
        wl.upload_model("post", "post.py", framework=Framework.PYTHON, input_schema="not a schema")
    """)
    assert done.returncode == 2, done.stderr
    refused = done.stdout.splitlines()
    assert len(refused) == 3
    assert refused[0].startswith("ConfigError upload_model('post'): ") and "input_schema" in refused[0]
    assert refused[1].startswith("ConfigError upload_model('post'): ") and "process_data" in refused[1]
    assert refused[2].startswith("ConfigError upload_model('post'): the model file ") and "missing.py" in refused[2]
    assert done.stderr.strip() == ("orchzip: error: input_schema must be a pyarrow.Schema, not str: "
                                   "give it as pa.schema([pa.field(name, type), ...])")


def test_serve_infers_through_a_python_step_and_its_worker_ends_with_the_server(tmp_path):
    import sys
    import psutil
    sys.path.insert(0, os.path.join(REPO, "tests", "fixtures", "serve"))
    from serve_helpers import Server, orchzip

    state = tmp_path / "state"
    post = tmp_path / "post.py"
    post.write_text(POST_PROCESSING)
    orchzip(str(state), "models", "upload", "houseprice", RF_MODEL)
    orchzip(str(state), "models", "upload", "post", str(post), "--framework", "python",
            "--input-schema", '{"variable": "fixed_size_list<float32>[1]"}',
            "--output-schema", '{"price_k": "fixed_size_list<float64>[1]", "expensive": "int64"}')
    orchzip(str(state), "pipelines", "create", "priced", "--step", "houseprice", "--step", "post")
    server = Server(state, tmp_path / "serve.log", "--no-env").start()
    try:
        rows = reference_rows()[:10]
        records = infer_records(server, "priced", rows)
        predicted = rf_predictions(houses(10))
        np.testing.assert_allclose([r["out"]["price_k"][0] for r in records], predicted / 1000.0, rtol=1e-6)
        assert [r["out"]["expensive"] for r in records] == [int(p > 500_000) for p in predicted]
        workers = [p for p in psutil.Process(server.process.pid).children(recursive=True)
                   if "model_worker" in " ".join(p.cmdline())]
        assert workers, "the Python step runs in a worker process of the server"
    finally:
        server.stop()
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive


def test_a_shim_from_before_steps_is_told_to_rebuild_rather_than_run_only_the_first_step(cli, tmp_path, state_dir):
    from orchzip.runtime.runner import pipeline_entry
    from orchzip.runtime.store import Store
    cli("models", "upload", "houseprice", RF_MODEL)
    cli("models", "upload", "scaler", scaling_model(tmp_path / "s.onnx", 2.0))
    cli("pipelines", "create", "one", "--step", "houseprice")
    cli("pipelines", "create", "two", "--step", "houseprice", "--step", "scaler")
    store = Store(state_dir)
    one, two = (pipeline_entry(store, store.get_pipeline(n)) for n in ("one", "two"))
    assert one["model"] == one["steps"][0]["path"] and os.path.isfile(one["model"])
    assert len(two["steps"]) == 2 and not os.path.exists(two["model"])
    assert two["model"] == "(pipeline 'two' has 2 steps, onnx first: rebuild the zip with this orchzip to run them)"
