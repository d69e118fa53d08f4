"""Non-ONNX steps run by worker processes in the model's own environment (runtime/model_worker,
orchzip_shim.model_workers, runtime/model_envs, runtime/model_frameworks).

Every model here is a real file the test writes; every worker a real process in a real uv-built
environment (Python 3.10 when it is installed, as Wallaroo's runtime).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pyarrow as pa
import pytest

from orchzip.errors import BadInput, ConfigError, ModelError
from orchzip.runtime import environments
from orchzip.runtime.model_envs import ensure_model_env
from orchzip.runtime.model_frameworks import check_upload
from orchzip_shim.model_workers import WorkerPool, WorkerStep, encode_schema, make_step, worker_dir
from tests.support.waiting import wait_for

TENSOR_IN = pa.schema([pa.field("tensor", pa.list_(pa.float32(), 3))])
SUM_OUT = pa.schema([pa.field("total", pa.float64()), pa.field("doubled", pa.list_(pa.float32()))])


@pytest.fixture(scope="module")
def model_python():
    """The cached environment of a Python model without requirements (built once)."""
    return ensure_model_env("python")


def write(folder, name, source):
    path = os.path.join(str(folder), name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(textwrap.dedent(source))
    return path


def spec_for(path, python, framework="python", input_schema=TENSOR_IN, output_schema=SUM_OUT, name="m"):
    return {"name": name, "version": "1", "framework": framework, "path": str(path), "python": python,
            "input_schema": encode_schema(input_schema), "output_schema": encode_schema(output_schema)}


def tensor_batch(rows):
    return pa.RecordBatch.from_pydict({"tensor": rows}, schema=TENSOR_IN)


SUM_MODEL = """
    import numpy as np
    from mac.types import InferenceData

    def process_data(input_data: InferenceData) -> InferenceData:
        t = input_data["tensor"]
        assert t.shape[1:] == (3,), t.shape  # fixed_size_list<float>[3] arrives as [N, 3]
        return {"total": t.sum(axis=1), "doubled": t * 2}
"""


# -- Python models ---------------------------------------------------------------------------

def test_a_python_model_sees_a_fixed_size_list_as_a_2d_array_and_answers_in_its_output_schema(tmp_path, model_python):
    path = write(tmp_path, "step.py", SUM_MODEL)
    with WorkerStep(spec_for(path, model_python)) as step:
        out = step.process(tensor_batch([[1, 2, 3], [4, 5, 6]]))
        again = step.process(tensor_batch([[0, 0, 1]]), row_offset=2)
        pid = step.worker_info["pid"]
        assert step.worker_info["pid"] == pid  # one long-lived worker for both batches
    assert out.schema == SUM_OUT
    assert out.to_pydict() == {"total": [6.0, 15.0], "doubled": [[2, 4, 6], [8, 10, 12]]}
    assert again.to_pydict()["total"] == [1.0]


def test_the_legacy_wallaroo_json_form_gets_a_dataframe(tmp_path, model_python):
    path = write(tmp_path, "legacy.py", """
        import pandas as pd

        def wallaroo_json(data: pd.DataFrame):
            return [{"total": float(sum(row))} for row in data["tensor"]]
    """)
    out_schema = pa.schema([pa.field("total", pa.float64())])
    with WorkerStep(spec_for(path, model_python, output_schema=out_schema)) as step:
        assert step.process(tensor_batch([[1, 2, 3], [1, 1, 1]])).to_pydict() == {"total": [6.0, 3.0]}


def test_ragged_lists_arrive_as_an_object_array_of_rows(tmp_path, model_python):
    path = write(tmp_path, "ragged.py", """
        import numpy as np
        from mac.types import InferenceData

        def process_data(input_data: InferenceData) -> InferenceData:
            counts = input_data["count"]
            assert counts.dtype == object
            return {"n": np.array([len(r) for r in counts]), "last": np.array([r[-1] for r in counts])}
    """)
    ins = pa.schema([pa.field("count", pa.list_(pa.int32()))])
    outs = pa.schema([pa.field("n", pa.int64()), pa.field("last", pa.int32())])
    batch = pa.RecordBatch.from_pydict({"count": [[1, 2, 3], [4]]}, schema=ins)
    with WorkerStep(spec_for(path, model_python, input_schema=ins, output_schema=outs)) as step:
        assert step.process(batch).to_pydict() == {"n": [3, 1], "last": [3, 4]}


def test_annotations_other_than_inference_data_are_refused_as_wallaroo_refuses_them(tmp_path, model_python):
    # Wallaroo compares the annotations with mac.types.InferenceData (Dict[str, npt.NDArray]);
    # dict[str, np.ndarray] is not equal to it, so Wallaroo's runtime refuses this model.
    path = write(tmp_path, "plain.py", """
        import numpy as np

        def process_data(input_data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return input_data
    """)
    with pytest.raises(ModelError) as err:
        WorkerStep(spec_for(path, model_python)).start()
    message = str(err.value)
    assert "\n" not in message
    assert "cannot load model 'm'" in message and "process_data(input_data: InferenceData) -> InferenceData" in message


# -- BYOP models -----------------------------------------------------------------------------

BYOP = """
    from pathlib import Path
    from typing import Any, Set

    import numpy as np
    from mac.config.inference import CustomInferenceConfig
    from mac.inference import Inference
    from mac.inference.creation import InferenceBuilder
    from mac.types import InferenceData
    import tabulate  # from the model's own requirements.txt


    class ScaleInference(Inference):
        @property
        def expected_model_types(self) -> Set[Any]:
            return {float}

        @Inference.model.setter
        def model(self, model) -> None:
            self._raise_error_if_model_is_wrong_type(model)
            self._model = model

        def _predict(self, input_data: InferenceData) -> InferenceData:
            return {"total": input_data["tensor"].sum(axis=1) * self.model,
                    "doubled": input_data["tensor"] * 2}


    class ScaleBuilder(InferenceBuilder):
        @property
        def inference(self) -> ScaleInference:
            return ScaleInference

        def create(self, config: CustomInferenceConfig) -> ScaleInference:
            inference = self.inference()
            inference.model = float((Path(config.model_path) / "artifacts" / "scale.txt").read_text())
            return inference
"""


def byop_folder(tmp_path):
    folder = tmp_path / "byop"
    (folder / "artifacts").mkdir(parents=True)
    (folder / "artifacts" / "scale.txt").write_text("10")
    (folder / "requirements.txt").write_text("tabulate\n")
    write(folder, "byop.py", BYOP)
    return folder


def test_a_byop_model_runs_in_its_own_environment_with_its_requirements(tmp_path):
    folder = byop_folder(tmp_path)
    fields = check_upload("scaler", "custom", folder, input_schema=TENSOR_IN, output_schema=SUM_OUT)
    assert fields["framework"] == "custom" and os.path.isfile(fields["python"])
    spec = {"name": "scaler", "path": str(folder), **fields}
    with make_step(spec) as step:
        assert step.process(tensor_batch([[1, 2, 3]])).to_pydict()["total"] == [60.0]
    # The task's interpreter never got the model's package: it lives in the model's environment.
    assert subprocess.run([fields["python"], "-c", "import tabulate"]).returncode == 0
    assert fields["python"] != sys.executable


def test_a_byop_model_needs_exactly_one_inference_builder(tmp_path):
    folder = byop_folder(tmp_path)
    write(folder, "second.py", """
        from mac.inference.creation import InferenceBuilder

        class Another(InferenceBuilder):
            pass
    """)
    with pytest.raises(ConfigError) as err:
        check_upload("scaler", "custom", folder, input_schema=TENSOR_IN, output_schema=SUM_OUT)
    assert "several InferenceBuilder subclasses (ScaleBuilder in byop.py, Another in second.py)" in str(err.value)


# -- the check at the door -------------------------------------------------------------------

def test_check_upload_requires_schemas_as_wallaroo_does(tmp_path):
    path = write(tmp_path, "step.py", SUM_MODEL)
    with pytest.raises(ConfigError) as err:
        check_upload("m", "python", path, input_schema=TENSOR_IN)
    assert str(err.value) == ("model 'm': framework python needs output_schema (a pyarrow schema), as Wallaroo "
                              "does (\"parameter 'output_schema' required for this framework\")")


@pytest.mark.parametrize("source, expected", [
    ("def process_data(input_data):\n    return input_data\n", "step.py line 1: process_data must be declared"),
    ("def process_data(x: dict) -> dict:\n    return x\n", "step.py line 1: process_data must be declared"),
    ("def helper(input_data):\n    return input_data\n", "no process_data function in step.py"),
    ("def process_data(input_data:\n", "step.py line 1: "),
])
def test_check_upload_reads_a_python_model_without_running_it(tmp_path, source, expected):
    path = write(tmp_path, "step.py", source)
    with pytest.raises(ConfigError) as err:
        check_upload("m", "python", path, input_schema=TENSOR_IN, output_schema=SUM_OUT)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_check_upload_of_a_zipped_python_model_returns_the_spec_fields(tmp_path, model_python):
    archive = tmp_path / "step.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("step.py", textwrap.dedent(SUM_MODEL))
    fields = check_upload("m", "python", archive, input_schema=TENSOR_IN, output_schema=encode_schema(SUM_OUT))
    assert fields == {"framework": "python", "python": model_python, "input_schema": encode_schema(TENSOR_IN),
                      "output_schema": encode_schema(SUM_OUT)}
    with WorkerStep({"name": "m", "path": str(archive), **fields}) as step:
        assert step.process(tensor_batch([[1, 1, 1]])).to_pydict()["total"] == [3.0]


# -- schema mismatches, each one line --------------------------------------------------------

def test_rows_without_the_input_schemas_column_are_refused_in_one_line(tmp_path, model_python):
    path = write(tmp_path, "step.py", SUM_MODEL)
    with WorkerStep(spec_for(path, model_python)) as step:
        with pytest.raises(BadInput) as err:
            step.process(pa.RecordBatch.from_pydict({"features": [[1.0, 2.0, 3.0]]}))
    assert str(err.value) == ("model 'm' needs column 'tensor' (fixed_size_list<item: float>[3]); the rows have "
                              "features (input schema: tensor: fixed_size_list<item: float>[3])")


def test_a_column_that_cannot_be_cast_names_the_rows(tmp_path, model_python):
    path = write(tmp_path, "step.py", SUM_MODEL)
    with WorkerStep(spec_for(path, model_python)) as step:
        with pytest.raises(BadInput) as err:
            step.process(pa.RecordBatch.from_pydict({"tensor": ["a", "b"]}), row_offset=10)
    assert str(err.value).startswith("column 'tensor' of rows 10..11 has type string; model 'm' needs "
                                     "fixed_size_list<item: float>[3]")


@pytest.mark.parametrize("body, expected", [
    ('return {"total": t.sum(axis=1)}', "answered rows 0..1 outside its output schema: the model returned no 'doubled'"),
    ('return {"total": t.sum(axis=1), "doubled": t, "extra": t}', "'extra' not in the output schema"),
    ('return {"total": t.sum(axis=1)[:1], "doubled": t}', "output 'total' has 1 rows; the input had 2"),
    ('return {"total": t, "doubled": t}', "output 'total' has shape (2, 3); the output schema gives it type double"),
    ('return [t]', "the model returned list, not a dict of arrays"),
])
def test_answers_outside_the_output_schema_are_one_line(tmp_path, model_python, body, expected):
    path = write(tmp_path, "step.py", f"""
        from mac.types import InferenceData

        def process_data(input_data: InferenceData) -> InferenceData:
            t = input_data["tensor"]
            {body}
    """)
    with WorkerStep(spec_for(path, model_python)) as step:
        with pytest.raises(ModelError) as err:
            step.process(tensor_batch([[1, 2, 3], [4, 5, 6]]))
        assert expected in str(err.value) and "\n" not in str(err.value)
        assert str(err.value).startswith("model 'm' answered rows 0..1 outside its output schema: ")


# -- models that fail, exit or hang ----------------------------------------------------------

FAULTY = """
    import os, time
    import numpy as np
    from mac.types import InferenceData

    def process_data(input_data: InferenceData) -> InferenceData:
        t = input_data["tensor"]
        if t[0, 0] == 1:
            raise ValueError("the first value may not be 1")
        if t[0, 0] == 2:
            print("giving up now", flush=True)
            os._exit(3)
        if t[0, 0] == 3:
            time.sleep(600)
        return {"total": t.sum(axis=1), "doubled": t * 2}
"""


def test_a_model_that_raises_gives_one_line_and_the_worker_goes_on(tmp_path, model_python):
    path = write(tmp_path, "faulty.py", FAULTY)
    with WorkerStep(spec_for(path, model_python, name="faulty")) as step:
        with pytest.raises(ModelError) as err:
            step.process(tensor_batch([[1, 0, 0], [5, 5, 5]]), row_offset=100)
        pid = step.worker_info["pid"]
        assert step.process(tensor_batch([[5, 5, 5]])).to_pydict()["total"] == [15.0]
        assert step.worker_info["pid"] == pid
    assert str(err.value) == ("model 'faulty' failed on rows 100..101: ValueError: the first value may not be 1 "
                              "(faulty.py, line 9, in process_data)")


def test_a_model_that_exits_is_reported_and_the_next_batch_gets_a_new_worker(tmp_path, model_python):
    path = write(tmp_path, "faulty.py", FAULTY)
    lines = []
    with WorkerStep(spec_for(path, model_python, name="faulty"), log=lines.append) as step:
        with pytest.raises(ModelError) as err:
            step.process(tensor_batch([[2, 0, 0]]), row_offset=7)
        assert step.process(tensor_batch([[5, 5, 5]])).to_pydict()["total"] == [15.0]
    assert str(err.value) == ("model 'faulty' stopped on row 7: its worker exited with code 3; "
                              "its last output: giving up now")
    assert "giving up now" in lines


def test_a_model_that_hangs_is_stopped_at_its_deadline(tmp_path, model_python):
    path = write(tmp_path, "faulty.py", FAULTY)
    with WorkerStep(spec_for(path, model_python, name="faulty"), timeout=1.5) as step:
        step.start()
        pid = step.worker_info["pid"]
        with pytest.raises(ModelError) as err:
            step.process(tensor_batch([[3, 0, 0]]))
        assert not _alive(pid)
        assert step.process(tensor_batch([[5, 5, 5]])).to_pydict()["total"] == [15.0]
    assert str(err.value) == ("model 'faulty' did not answer row 0 within 1.5 s; its worker was stopped "
                              "(a longer limit: $ORCHZIP_MODEL_TIMEOUT seconds)")


def test_a_model_whose_import_hangs_is_stopped_at_the_start_deadline(tmp_path, model_python):
    path = write(tmp_path, "slow.py", "import time\ntime.sleep(600)\n")
    with pytest.raises(ModelError) as err:
        WorkerStep(spec_for(path, model_python, name="slow"), start_timeout=1.5).start()
    assert str(err.value).startswith("model 'slow' did not load within 1.5 s; its worker was stopped")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("started_in", ["main thread", "other thread"])
def test_a_worker_dies_with_the_process_that_started_it(tmp_path, model_python, started_in):
    path = write(tmp_path, "faulty.py", FAULTY)
    script = write(tmp_path, "parent.py", f"""
        import sys, threading, time
        import pyarrow as pa
        from orchzip_shim.model_workers import WorkerStep
        from tests.test_model_workers import spec_for, tensor_batch
        step = WorkerStep(spec_for({str(path)!r}, {model_python!r}))
        def work():
            step.start()
            print(step.worker_info["pid"], flush=True)
            step.process(tensor_batch([[3, 0, 0]]))  # hangs in the model
        if {started_in!r} == "main thread":
            work()
        else:
            threading.Thread(target=work, daemon=True).start()
            time.sleep(600)
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parent = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        worker_pid = int(parent.stdout.readline())
        assert _alive(worker_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        wait_for(lambda: not _alive(worker_pid), timeout=10, what="the worker to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()


# -- many workers ----------------------------------------------------------------------------

def test_a_pool_answers_in_order_and_reports_failures_per_batch(tmp_path, model_python):
    path = write(tmp_path, "faulty.py", FAULTY)
    batches = [tensor_batch([[10 + i, 0, 0], [0, 0, i]]) for i in range(8)]
    batches[5] = tensor_batch([[1, 0, 0], [0, 0, 0]])  # raises in the model
    with WorkerPool(spec_for(path, model_python, name="faulty"), 3) as pool:
        answers = pool.map(batches, retries=1)
        pids = {step.worker_info["pid"] for step in pool.steps if step.worker_info}
    assert len(answers) == 8
    for i, answer in enumerate(answers):
        if i == 5:
            assert isinstance(answer, ModelError)
            assert str(answer).startswith("model 'faulty' failed on rows 10..11: ValueError")
        else:
            assert answer.to_pydict()["total"] == [10.0 + i, float(i)]
    assert len(pids) > 1  # the batches really went to several worker processes


# -- where it runs ---------------------------------------------------------------------------

def test_worker_step_runs_on_python_310_with_only_numpy_and_pyarrow(tmp_path, model_python):
    """The shim's side runs inside task processes: Python 3.10, numpy and pyarrow only."""
    path = write(tmp_path, "step.py", SUM_MODEL)
    shim_dir = environments.task_python_path(environments.default_cache_dir())[1]
    script = write(tmp_path, "task.py", f"""
        import sys
        import pyarrow as pa
        from orchzip_shim.model_workers import WorkerStep, encode_schema
        assert "orchzip" not in sys.modules
        ins = pa.schema([pa.field("tensor", pa.list_(pa.float32(), 3))])
        outs = pa.schema([pa.field("total", pa.float64()), pa.field("doubled", pa.list_(pa.float32()))])
        spec = {{"name": "m", "framework": "python", "path": {str(path)!r}, "python": sys.executable,
                 "input_schema": encode_schema(ins), "output_schema": encode_schema(outs)}}
        with WorkerStep(spec) as step:
            out = step.process(pa.RecordBatch.from_pydict({{"tensor": [[1.0, 2.0, 3.0]]}}, schema=ins))
        print("%d.%d" % sys.version_info[:2], out.to_pydict()["total"])
    """)
    env = dict(os.environ, PYTHONPATH=shim_dir, ORCHZIP_MODEL_WORKER=worker_dir())
    done = subprocess.run([model_python, script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    version = subprocess.run([model_python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    assert done.stdout.split() == [version, "[6.0]"]
    if os.path.exists("/root/.pyenv/versions/3.10.13/bin/python3.10"):
        assert version == "3.10"


def test_make_step_gives_onnx_models_to_onnxruntime(tmp_path):
    from orchzip_shim.models import OnnxModel
    from tests.conftest import EXAMPLE_MODEL
    step = make_step({"name": "prices", "framework": "onnx", "path": EXAMPLE_MODEL, "tensor_column": None})
    assert isinstance(step, OnnxModel)


# -- the flagship: a statsmodels forecaster as a Python model --------------------------------

FORECASTER = """
    import numpy as np
    from mac.types import InferenceData
    from statsmodels.tsa.arima.model import ARIMA

    DAYS = 7


    def forecast_week(series):
        fitted = ARIMA(np.asarray(series, dtype=float), order=(1, 0, 1)).fit()
        return fitted.forecast(steps=DAYS).round().astype(np.int32)


    def process_data(input_data: InferenceData) -> InferenceData:
        weeks = np.stack([forecast_week(row) for row in input_data["count"]])
        return {"forecast": weeks, "weekly_average": weeks.mean(axis=1).astype(np.float32)}
"""
RENTALS = [1526, 1550, 1708, 1005, 1623, 1712, 1530, 1605, 1538, 1746, 1472, 1589, 1913, 1815,
           2115, 2475, 2927, 1635, 1812, 1107, 1450, 1917, 1807, 1461, 1969, 2402, 1446, 1851]


def test_a_statsmodels_forecaster_runs_as_a_python_model_with_its_requirements(tmp_path):
    archive = tmp_path / "forecast.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("forecast.py", textwrap.dedent(FORECASTER))
        zf.writestr("requirements.txt", "statsmodels>=0.14\n")
    ins = pa.schema([pa.field("count", pa.list_(pa.int32()))])
    outs = pa.schema([pa.field("forecast", pa.list_(pa.int32())), pa.field("weekly_average", pa.float32())])
    fields = check_upload("bikedaymodel", "python", archive, input_schema=ins, output_schema=outs)
    rows = [RENTALS, RENTALS[7:] + RENTALS[:7]]
    with WorkerStep({"name": "bikedaymodel", "path": str(archive), **fields}) as step:
        # int64 lists (as pandas hands them) are cast to the schema's list<int32>
        out = step.process(pa.RecordBatch.from_pydict({"count": rows})).to_pydict()
    assert [len(week) for week in out["forecast"]] == [7, 7]
    assert out["weekly_average"] == pytest.approx([np.mean(week) for week in out["forecast"]])
    # The same function called directly in the model's environment gives the same forecasts.
    write(tmp_path, "forecast.py", FORECASTER)
    direct = subprocess.run(
        [fields["python"], "-c", "import json, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import forecast; "
         "print(json.dumps([forecast.forecast_week(r).tolist() for r in json.loads(sys.argv[3])]))",
         str(tmp_path), os.path.join(worker_dir(), "standins"), json.dumps(rows)],
        capture_output=True, text=True, timeout=120)
    assert direct.returncode == 0, direct.stderr
    assert out["forecast"] == json.loads(direct.stdout)


def test_a_spec_whose_environment_is_gone_gets_it_rebuilt(tmp_path, model_python):
    from orchzip.runtime.model_envs import with_model_env
    path = write(tmp_path, "step.py", SUM_MODEL)
    spec = spec_for(path, str(tmp_path / "gone" / "bin" / "python"))
    with pytest.raises(ConfigError) as err:
        WorkerStep(spec).start()
    assert "upload the model again to rebuild it" in str(err.value)
    assert with_model_env(spec)["python"] == model_python
    assert with_model_env(dict(spec, python=model_python)) == dict(spec, python=model_python)


def test_a_scikit_learn_model_checked_at_the_door_runs_in_a_worker_step(tmp_path):
    from orchzip.runtime.model_envs import ensure_model_env
    python = ensure_model_env("sklearn")
    model = tmp_path / "linear.pkl"
    trained = subprocess.run([python, "-c", textwrap.dedent(f"""
        import pickle
        import numpy as np
        from sklearn.linear_model import LinearRegression
        x = np.arange(12, dtype=float).reshape(4, 3)
        with open({str(model)!r}, "wb") as fh:
            pickle.dump(LinearRegression().fit(x, x.sum(axis=1) * 2), fh)
    """)], capture_output=True, text=True, timeout=120)
    assert trained.returncode == 0, trained.stderr
    ins = pa.schema([pa.field("inputs", pa.list_(pa.float64(), 3))])
    outs = pa.schema([pa.field("predictions", pa.float64())])
    fields = check_upload("linear", "sklearn", model, input_schema=ins, output_schema=outs)
    with make_step({"name": "linear", "path": str(model), **fields}) as step:
        out = step.process(pa.RecordBatch.from_pydict({"inputs": [[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]]}))
    assert out.to_pydict()["predictions"] == pytest.approx([6.0, 4.0])


def test_a_task_started_by_orchzip_run_finds_the_worker_and_logs_the_models_prints(tmp_path, model_python, orchzip_cli):
    model = write(tmp_path, "step.py", SUM_MODEL.replace("t = input_data", "print('model saw', len(input_data['tensor']), 'rows')\n        t = input_data"))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec_for(model, model_python)))
    orchestration = tmp_path / "orch"
    orchestration.mkdir()
    write(orchestration, "main.py", """
        import json, sys
        import pyarrow as pa
        import wallaroo
        from orchzip_shim.model_workers import WorkerStep

        spec = json.load(open(wallaroo.Client().task_args()["spec"]))
        batch = pa.RecordBatch.from_pydict({"tensor": [[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]})
        with WorkerStep(spec) as step:
            print("totals", step.process(batch).to_pydict()["total"], "python %d.%d" % sys.version_info[:2])
    """)
    write(orchestration, "requirements.txt", "")
    done = orchzip_cli("run", str(orchestration), "--arg", f"spec={spec_file}", timeout=240)
    assert done.code == 0, done
    logs = orchzip_cli("runs", "logs", "--last")
    assert "model saw 2 rows" in logs.out
    assert "totals [6.0, 3.0]" in logs.out


def test_closing_a_step_with_a_batch_in_flight_stops_it_at_once(tmp_path, model_python):
    import threading
    path = write(tmp_path, "faulty.py", FAULTY)
    step = WorkerStep(spec_for(path, model_python, name="faulty"), timeout=600)
    step.start()
    failures = []

    def infer():
        try:
            step.process(tensor_batch([[3, 0, 0]]))  # hangs in the model
        except ModelError as err:
            failures.append(str(err))

    caller = threading.Thread(target=infer)
    caller.start()
    wait_for(lambda: step._lock.locked(), timeout=10, what="the batch to be in flight")
    time.sleep(0.3)
    step.close()
    caller.join(timeout=10)
    assert not caller.is_alive()
    assert failures == ["model 'faulty' stopped on row 0: its worker was killed by SIGKILL"]


def test_batches_larger_than_the_pipe_cross_whole(tmp_path, model_python):
    path = write(tmp_path, "step.py", SUM_MODEL)
    rows = np.random.default_rng(3).normal(size=(300_000, 3)).astype(np.float32)  # 3.6 MB each way
    column = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), 3)
    with WorkerStep(spec_for(path, model_python)) as step:
        out = step.process(pa.RecordBatch.from_arrays([column], schema=TENSOR_IN))
    assert out.num_rows == 300_000
    np.testing.assert_allclose(out.column(0).to_numpy(), rows.sum(axis=1), rtol=1e-6)
    assert np.array_equal(out.column(1).flatten().to_numpy().reshape(-1, 3), rows * 2)


def test_a_byop_model_zipped_as_its_folder_loads_as_wallaroo_takes_it(tmp_path):
    folder = byop_folder(tmp_path)
    archive = tmp_path / "byop.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # a zip of the folder itself: byop/byop.py, byop/artifacts/...
        for root, _dirs, files in os.walk(folder):
            for name in files:
                full = os.path.join(root, name)
                zf.write(full, os.path.relpath(full, tmp_path))
    fields = check_upload("scaler", "custom", archive, input_schema=TENSOR_IN, output_schema=SUM_OUT)
    with WorkerStep({"name": "scaler", "path": str(archive), **fields}) as step:
        assert step.process(tensor_batch([[1, 1, 1]])).to_pydict()["total"] == [30.0]


def test_a_model_whose_import_fails_is_refused_at_upload_in_one_line(tmp_path):
    path = write(tmp_path, "step.py", "import numpy as np\nimport not_installed_anywhere\n" + textwrap.dedent(SUM_MODEL))
    with pytest.raises(ModelError) as err:
        check_upload("m", "python", path, input_schema=TENSOR_IN, output_schema=SUM_OUT)
    assert str(err.value) == (f"cannot load model 'm' (python, {path}): ModuleNotFoundError: No module named "
                              f"'not_installed_anywhere' (step.py, line 2, in <module>)")


REPORT = """
    from typing import Any, Set

    import numpy as np
    from mac.inference import Inference
    from mac.inference.creation import InferenceBuilder
    from mac.types import InferenceData


    class WeeklyReport(Inference):
        @property
        def expected_model_types(self) -> Set[Any]:
            return {str}

        @Inference.model.setter
        def model(self, model) -> None:
            self._model = model

        def _predict(self, input_data: InferenceData) -> InferenceData:
            weeks = input_data["forecast"]
            return {"week_total": weeks.sum(axis=1).astype(np.int64), "busiest_day": weeks.argmax(axis=1)}


    class WeeklyReportBuilder(InferenceBuilder):
        @property
        def inference(self) -> WeeklyReport:
            return WeeklyReport

        def create(self, config) -> WeeklyReport:
            inference = self.inference()
            inference.model = "sum and argmax"
            return inference
"""


def test_a_tutorial_style_forecast_pipeline_chains_a_statsmodels_step_and_a_byop_step(tmp_path, orchzip_cli):
    from tests.conftest import REPO
    forecaster = tmp_path / "forecast.zip"
    with zipfile.ZipFile(forecaster, "w") as zf:
        zf.writestr("forecast.py", textwrap.dedent(FORECASTER))
        zf.writestr("requirements.txt", "statsmodels>=0.14\n")
    report = tmp_path / "report"
    report.mkdir()
    write(report, "report.py", REPORT)
    series = tmp_path / "series.json"
    series.write_text(json.dumps([RENTALS, RENTALS[::-1]]))
    built = orchzip_cli("build", os.path.join(REPO, "tests", "fixtures", "wallaroo", "forecast_pipeline"),
                        "-o", str(tmp_path))
    assert built.code == 0, built
    done = orchzip_cli("run", str(tmp_path / "forecast_pipeline.zip"), "--arg", f"forecaster={forecaster}",
                       "--arg", f"report={report}", "--arg", f"series={series}", timeout=280)
    assert done.code == 0, done
    lines = {k: json.loads(v) for k, v in (line.split(": ", 1) for line in done.out.splitlines() if ": " in line)
             if k in ("forecast columns", "forecasts", "report columns", "week totals", "busiest days")}
    assert lines["forecast columns"] == ["time", "in.count", "out.forecast", "out.weekly_average", "anomaly.count"]
    weeks = lines["forecasts"]
    assert [len(w) for w in weeks] == [7, 7]
    assert lines["report columns"] == ["time", "in.count", "out.week_total", "out.busiest_day", "anomaly.count"]
    assert lines["week totals"] == [sum(w) for w in weeks]
    assert lines["busiest days"] == [int(np.argmax(w)) for w in weeks]


def test_a_byop_model_may_predict_asynchronously(tmp_path, model_python):
    folder = tmp_path / "async"
    folder.mkdir()
    write(folder, "model.py", """
        import asyncio
        from typing import Any, Set

        from mac.inference import AsyncInference
        from mac.inference.creation import InferenceBuilder
        from mac.types import InferenceData


        class Halving(AsyncInference):
            @property
            def expected_model_types(self) -> Set[Any]:
                return {float}

            @AsyncInference.model.setter
            def model(self, model) -> None:
                self._raise_error_if_model_is_wrong_type(model)
                self._model = model

            async def _predict(self, input_data: InferenceData) -> InferenceData:
                await asyncio.sleep(0)
                t = input_data["tensor"]
                return {"total": t.sum(axis=1) * self.model, "doubled": t * 2}


        class HalvingBuilder(InferenceBuilder):
            @property
            def inference(self) -> Halving:
                return Halving

            def create(self, config) -> Halving:
                inference = self.inference()
                inference.model = 0.5
                return inference
    """)
    with WorkerStep(spec_for(folder, model_python, framework="custom")) as step:
        assert step.process(tensor_batch([[1, 2, 3]])).to_pydict()["total"] == [3.0]
        assert step.process(tensor_batch([[2, 2, 2]])).to_pydict()["total"] == [3.0]


def test_requirements_given_beside_a_single_py_file_go_into_its_environment(tmp_path):
    path = write(tmp_path, "step.py", "import tabulate\n" + textwrap.dedent(SUM_MODEL))
    requirements = write(tmp_path, "needs.txt", "tabulate\n")
    fields = check_upload("m", "python", path, input_schema=TENSOR_IN, output_schema=SUM_OUT,
                          requirements=requirements)
    assert subprocess.run([fields["python"], "-c", "import tabulate"]).returncode == 0
    with pytest.raises(ModelError) as err:  # without them, the import fails at the door
        check_upload("m", "python", path, input_schema=TENSOR_IN, output_schema=SUM_OUT)
    assert "No module named 'tabulate'" in str(err.value)
