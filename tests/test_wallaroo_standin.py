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
    assert "columns: ['time', 'in.tensor', 'out.variable', 'anomaly.count']" in result.out
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
    assert "columns: ['time', 'in.tensor', 'out.variable', 'anomaly.count']" in result.out
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
        return db.execute("SELECT in_tensor, out_variable, anomaly_count FROM results ORDER BY rowid").fetchall()


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


# -- tutorial-style flows set up with orchzip's CLI alone -------------------------------------

@pytest.fixture
def tour_setup(cli):
    """A workspace holding a pipeline and a FILE connection of houses; a second pipeline outside it."""
    for argv in (("workspaces", "create", "tour-workspace"),
                 ("connections", "create", "tour-houses", "--type", "FILE",
                  "--details", json.dumps({"path": XTEST_1K}), "--workspace", "tour-workspace"),
                 ("pipelines", "create", "tour-pipeline", "--model", RF_MODEL, "--workspace", "tour-workspace"),
                 ("pipelines", "create", "elsewhere", "--model", GBR_MODEL)):
        assert cli(*argv).code == 0, argv


def reported(out):
    """The ``name: value`` lines a fixture printed, as a dict."""
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith("orchzip"))


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
def test_a_tutorial_style_flow_finds_what_the_cli_set_up_and_fails_as_the_sdk_does(cli, build, tour_setup):
    result = cli("run", build("workspace_tour"))
    assert result.code == 0, result
    seen = reported(result.out)
    assert seen["sdk errors"].count("Error") + seen["sdk errors"].count("Missing") == 9
    assert seen["workspace"] == "tour-workspace" and seen["current workspace"] == "tour-workspace"
    assert seen["missing workspace"] == (
        "Exception: Error: Workspace with name no-such-workspace does not exist. If you would like to create "
        "one, send in the request with `create_if_not_exist` flag set to True.")
    assert seen["created workspace"] == "['made-by-the-task', True]"
    assert seen["bad workspace name"].startswith("InvalidNameError: Name 'not a dns name is invalid")
    # The workspace shows its pipelines without a list_pipelines() call first.
    assert seen["workspace pipelines"] == "['tour-pipeline']"
    assert seen["workspace connections"] == "['tour-houses']"
    assert seen["missing pipeline by name"] == "EntityNotFoundError: Pipeline not found: {'pipeline_name': 'no-such-pipeline'}"
    assert seen["missing pipeline"] == "Exception: Pipeline no-such-pipeline not found in this workspace."
    assert seen["missing connection"] == "Exception: Failed to get connection"
    assert seen["missing model"] == "Exception: Error: A model with the name no-such-model does not exist."
    assert seen["caught by name"] == "EntityNotFoundError"
    for check in ("pipeline is a Pipeline", "same pipeline by name", "pipeline model", "deployment configs agree"):
        assert seen[check] == "True", check
    assert seen["connection"] == "['tour-houses', 'FILE', ['tour-workspace']]"
    assert seen["status"] == "Running"
    assert seen["infer columns"] == "['time', 'in.tensor', 'out.variable', 'anomaly.count']"


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
def test_parallel_infer_concatenates_batches_marks_failed_ones_and_needs_a_deployment(cli, build, tour_setup):
    result = cli("run", build("workspace_tour"))
    assert result.code == 0, result
    seen = reported(result.out)
    expected = [round(float(p), 2) for p in expected_predictions(RF_MODEL, reference_rows()[:6])]
    assert seen["parallel rows"] == "6"
    assert seen["parallel columns"] == "['time', 'in.tensor', 'out.variable', 'anomaly.count']"
    assert seen["parallel predictions"] == seen["single predictions"]
    np.testing.assert_allclose(json.loads(seen["parallel predictions"]), expected, rtol=1e-5)
    assert seen["parallel arrow"] == "['Table', 6]"
    # Six rows in batches of two; the last house is broken, so only the last batch fails.
    assert seen["partial errors"] == "[False, False, False, False, True, True]"
    assert float(seen["partial first prediction"]) == pytest.approx(expected[0], rel=1e-5)
    assert seen["list tensor"] == "ValueError: tensor must be a pandas DataFrame or a pyarrow Table"
    assert seen["pre-2024 form"] == ("TypeError: Pipeline.parallel_infer() got an unexpected keyword argument "
                                     "'tensor_list'")
    assert seen["status after undeploy"] == "Pipeline tour-pipeline is not deployed"
    assert seen["infer after undeploy"] == "RuntimeError: Pipeline tour-pipeline is not deployed"
    assert seen["parallel after undeploy"] == "RuntimeError: Pipeline tour-pipeline is not deployed"
    assert seen["unsupported"].startswith("NotAvailableLocally: wallaroo.Client.list_assays is not available")
    assert "tour complete" in result.out.splitlines()


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
def test_results_follow_the_targeted_wallaroo_release(cli, build, tour_setup):
    result = cli("run", build("workspace_tour"), env={"ORCHZIP_WALLAROO_VERSION": "2023.2.1"})
    assert result.code == 0, result
    seen = reported(result.out)
    assert seen["infer columns"] == "['time', 'in.tensor', 'out.variable', 'check_failures']"
    assert seen["parallel columns"] == "['time', 'in.tensor', 'out.variable', 'check_failures']"


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
@pytest.mark.parametrize("args, message", [
    ((), "orchzip: error: Pipeline forgotten-pipeline not found in this workspace. No local pipeline "
         "'forgotten-pipeline' (known: elsewhere, tour-pipeline); create it with: orchzip pipelines create "
         "forgotten-pipeline --model MODEL.onnx --workspace tour-workspace"),
    (("--arg", "pipeline_name=elsewhere"),
     "orchzip: error: Pipeline elsewhere not found in this workspace. Pipeline 'elsewhere' is in workspace "
     "'default', not in the current one ('tour-workspace'); call wl.set_current_workspace(wl.get_workspace("
     "'default')) first, or move it: orchzip workspaces add-pipeline tour-workspace elsewhere"),
    (("--arg", "workspace_name=nope"),
     "orchzip: error: Error: Workspace with name nope does not exist. If you would like to create one, send in "
     "the request with `create_if_not_exist` flag set to True. Workspace 'nope' does not exist locally (known: "
     "tour-workspace); create it with: orchzip workspaces create nope"),
])
def test_what_a_task_cannot_find_is_one_line_saying_how_to_create_it_locally(cli, build, tour_setup, args, message):
    result = cli("run", build("missing_pipeline"), *args)
    assert result.code == 1, result
    assert "Traceback" not in result.out + result.err
    assert message in (result.out + result.err).splitlines(), result  # what the task printed
    assert result.err.splitlines()[-1].startswith(message + " (log: ")  # orchzip run's summary
    assert "not reached" not in result.out
