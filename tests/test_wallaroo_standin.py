"""Orchestrations written for Wallaroo (``import wallaroo``) run locally, unmodified.

Each fixture under tests/fixtures/wallaroo/ is a tutorial-style orchestration; each test
builds it with ``orchzip build`` and runs the zip with ``orchzip run`` in a task environment
built from its requirements.txt (one environment, shared by the tests of the session).
"""

import functools
import http.server
import json
import os
import threading

import duckdb
import numpy as np
import onnxruntime as ort
import pytest

from conftest import GBR_MODEL, REPO, RF_MODEL, TUTORIAL_DATA, XTEST_1K, reference_rows

FIXTURES = os.path.join(REPO, "tests", "fixtures", "wallaroo")
HOUSEPRICE_LOCAL = os.path.join(REPO, "orchestrations", "houseprice_local")
ENV_BUILD_TIMEOUT = 900  # the first environment of a machine downloads pandas, pyarrow, onnxruntime


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory):
    """One task-environment cache for the whole session, so each environment is built once."""
    return str(tmp_path_factory.mktemp("task-envs"))


@pytest.fixture
def cli(orchzip_cli, env_cache):
    def run(*argv, timeout=ENV_BUILD_TIMEOUT, env=None):
        return orchzip_cli(*argv, timeout=timeout, env={"ORCHZIP_ENV_CACHE": env_cache, **(env or {})})
    return run


@pytest.fixture
def build(cli, tmp_path):
    """``orchzip build`` a fixture folder; returns the zip's path."""
    def run(name):
        folder = name if os.path.isabs(name) else os.path.join(FIXTURES, name)
        result = cli("build", folder, "-o", str(tmp_path / "dist"), timeout=120)
        assert result.code == 0, result
        path = tmp_path / "dist" / (os.path.basename(folder) + ".zip")
        assert path.is_file(), result
        return str(path)
    return run


@pytest.fixture
def pipelines(cli):
    assert cli("pipelines", "create", "houseprice", "--model", RF_MODEL).code == 0
    assert cli("pipelines", "create", "houseprice-gbr", "--model", GBR_MODEL).code == 0


def expected_predictions(model, rows):
    x = np.array([r["tensor"] for r in rows], dtype=np.float32)
    return ort.InferenceSession(model).run(None, {"float_input": x})[0].ravel()


def printed_predictions(out):
    return [float(line.split(":", 1)[1]) for line in out.splitlines() if line.startswith("prediction:")]


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
@pytest.mark.parametrize("pipeline_name, model", [("houseprice", RF_MODEL), ("houseprice-gbr", GBR_MODEL)])
def test_deploy_infer_a_dataframe_and_undeploy_with_both_tutorial_models(cli, build, pipelines, pipeline_name, model):
    zip_path = build("houseprice_infer")
    result = cli("run", zip_path, "--arg", f"pipeline_name={pipeline_name}", "--arg", f"houses={XTEST_1K}",
                 "--arg", "rows=7")
    assert result.code == 0, result
    assert "in task: True" in result.out
    assert "workspace: housepricing" in result.out
    assert "columns: ['time', 'in.tensor', 'out.variable', 'check_failures']" in result.out
    assert "time dtype: datetime64" in result.out
    assert "check failures: 0" in result.out
    assert result.out.rstrip().endswith("undeployed")
    np.testing.assert_allclose(printed_predictions(result.out),
                               expected_predictions(model, reference_rows()[:7]), rtol=1e-6)


@pytest.fixture
def arrow_server():
    """The tutorial data folder served over HTTP on loopback; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=TUTORIAL_DATA)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
def test_an_arrow_file_from_an_http_connection_is_inferred_as_an_arrow_table(cli, build, pipelines, arrow_server):
    details = json.dumps({"host": f"{arrow_server}/xtest-1k.arrow"})
    assert cli("connections", "create", "houseprice_arrow", "--type", "HTTP", "--details", details).code == 0
    result = cli("run", build("http_arrow"))
    assert result.code == 0, result
    assert "connection: houseprice_arrow (HTTP)" in result.out
    assert "rows fetched: 1000" in result.out
    assert "result type: pyarrow.lib.Table" in result.out
    assert "result rows: 1000" in result.out
    assert "columns: ['time', 'in.tensor', 'out.variable', 'check_failures']" in result.out
    np.testing.assert_allclose(printed_predictions(result.out),
                               expected_predictions(RF_MODEL, reference_rows()[:5]), rtol=1e-6)


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
def test_a_call_outside_the_supported_surface_fails_with_one_clear_line(cli, build):
    result = cli("run", build("unsupported_call"))
    assert result.code == 1, result
    assert "in task: True" in result.out
    assert "Traceback" not in result.out + result.err
    errors = [line for line in (result.out + result.err).splitlines() if line.startswith("orchzip: error:")]
    assert errors, result
    assert "wallaroo.Client.list_assays is not available in an orchzip local run" in errors[0]
    assert "pipelines_by_name" in errors[0]  # it lists what is supported


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
def test_a_second_run_of_the_same_zip_builds_no_new_environment(cli, build, pipelines, env_cache):
    zip_path = build("houseprice_infer")
    args = ("--arg", f"houses={XTEST_1K}", "--arg", "rows=2")
    first = cli("run", zip_path, *args, "--json")
    assert first.code == 0, first
    envs = sorted(os.listdir(env_cache))
    second = cli("run", zip_path, *args, "--json")
    assert second.code == 0, second
    assert "building the task environment" not in second.err, second
    assert sorted(os.listdir(env_cache)) == envs
    logs = cli("runs", "logs", second.json()["id"]).out
    assert "orchzip: task python" in logs and "Python 3.10" in logs and "cached" in logs


@pytest.mark.timeout(300)
def test_no_env_runs_the_task_in_orchzips_own_python(cli, build, pipelines):
    result = cli("run", build("houseprice_infer"), "--no-env", "--arg", f"houses={XTEST_1K}", "--arg", "rows=1")
    assert result.code == 0, result
    assert "building the task environment" not in result.err
    assert "(--no-env)" in result.out


# -- the shim's in-Wallaroo path, with the stand-in playing the SDK --------------------------

def results_table(db_path):
    with duckdb.connect(db_path, read_only=True) as db:
        return db.execute("SELECT in_tensor, out_variable, check_failures FROM results ORDER BY rowid").fetchall()


@pytest.mark.timeout(300)
def test_the_shims_sdk_path_writes_the_same_rows_as_its_local_path(cli, build, tmp_path):
    local_db, sdk_db = str(tmp_path / "local.duckdb"), str(tmp_path / "sdk.duckdb")
    assert cli("connections", "create", "houseprice_inputs", "--type", "FILE",
               "--details", json.dumps({"path": XTEST_1K})).code == 0
    for name, path in (("results_local", local_db), ("results_sdk", sdk_db)):
        assert cli("connections", "create", name, "--type", "DUCKDB",
                   "--details", json.dumps({"path": path, "table": "results"})).code == 0
    assert cli("pipelines", "create", "houseprice", "--model", RF_MODEL).code == 0
    zip_path = build(HOUSEPRICE_LOCAL)

    local = cli("run", zip_path, "--no-env", "--arg", "output_connection=results_local", "--arg", "batch_size=300")
    assert local.code == 0, local
    sdk = cli("run", zip_path, "--no-env", "--arg", "output_connection=results_sdk", "--arg", "batch_size=300",
              env={"ORCHZIP_SHIM_MODE": "sdk"})
    assert sdk.code == 0, sdk

    local_rows, sdk_rows = results_table(local_db), results_table(sdk_db)
    assert len(sdk_rows) == len(local_rows) == 1000
    assert [r[0] for r in sdk_rows] == [r[0] for r in local_rows]
    assert [r[2] for r in sdk_rows] == [0] * 1000
    np.testing.assert_allclose([r[1][0] for r in sdk_rows], [r[1][0] for r in local_rows], rtol=1e-6)


@pytest.mark.timeout(120)
def test_in_sdk_mode_the_shim_resolves_everything_through_the_standin(tmp_path):
    import subprocess
    import sys
    from orchzip.runtime.environments import STANDIN_DIR

    context = {"task_id": "t", "run_id": "r", "args": {"k": 1}, "workspaces": [],
               "connections": {"inputs": {"id": 1, "type": "FILE", "details": {"path": XTEST_1K},
                                          "created_at": "2026-01-01T00:00:00+00:00", "workspace_names": []}},
               "pipelines": {"houseprice": {"model": RF_MODEL, "tensor_column": None}}}
    (tmp_path / "context.json").write_text(json.dumps(context))
    code = ("import orchzip_shim, wallaroo; t = orchzip_shim.current_task(); "
            "print(t.where, t.args, t.connection('inputs'), type(t.pipeline('houseprice')).__name__, wallaroo.__file__)")
    env = dict(os.environ, ORCHZIP_CONTEXT=str(tmp_path / "context.json"), ORCHZIP_SHIM_MODE="sdk",
               WALLAROO_TASK_ID="t", PYTHONPATH=STANDIN_DIR)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    where, rest = done.stdout.split(" ", 1)
    assert where == "wallaroo"
    assert "{'k': 1}" in rest and "Connection(name='inputs', type='FILE')" in rest
    assert "SdkPipelineModel" in rest and STANDIN_DIR in rest


@pytest.mark.timeout(300)
def test_a_requirement_that_cannot_be_installed_fails_the_run_with_uvs_reason(cli, build, env_cache):
    result = cli("run", build("uninstallable"))
    assert result.code != 0, result
    assert "Traceback" not in result.err
    assert "building the task environment" in result.err  # progress, shown while uv works
    block = result.err[result.err.index("orchzip: error:"):]
    assert block.startswith("orchzip: error: cannot install the task's requirements.txt (Python 3.")
    assert "pandas>=99" in block and "unsatisfiable" in block, block
    runs = cli("runs", "list", "--json").json()
    assert runs[0]["status"] == "failure" and "pandas>=99" in runs[0]["error"]
    assert not os.path.exists(os.path.join(os.path.dirname(runs[0]["work_dir"]), "context.json"))
