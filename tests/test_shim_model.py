"""The ONNX model and the loop: Wallaroo-shaped results, the reference predictions, errors."""

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest

import orchzip_shim
from orchzip_shim.connectors import Sink
from orchzip_shim.errors import BadInput, ConfigError, ModelError, UnknownConnection, UnknownPipeline
from orchzip_shim.context import TaskContext, expand_env
from orchzip_shim.models import OnnxModel

from conftest import EXAMPLE_MODEL, GBR_MODEL, RF_MODEL, reference_rows


def direct_predictions(model_path, rows):
    x = np.array([r["tensor"] for r in rows], dtype=np.float32)
    return ort.InferenceSession(model_path).run(None, {"float_input": x})[0].ravel()


@pytest.mark.parametrize("model_path", [RF_MODEL, GBR_MODEL, EXAMPLE_MODEL])
def test_results_are_shaped_as_wallaroo_returns_them(model_path):
    rows = reference_rows()[:50]
    batch = pa.RecordBatch.from_pylist(rows)
    result = OnnxModel(model_path).infer_batch(batch)
    assert result.schema.names == ["time", "in.tensor", "out.variable", "anomaly.count"]
    assert pa.types.is_timestamp(result.schema.field("time").type)
    assert result.column("anomaly.count").to_pylist() == [0] * 50
    predicted = np.array([v[0] for v in result.column("out.variable").to_pylist()])
    np.testing.assert_allclose(predicted, direct_predictions(model_path, rows), rtol=1e-6)


@pytest.mark.parametrize("version, column", [("2023.2.1", "check_failures"), ("2024.1.0", "anomaly.count"),
                                             ("2026.1.3", "anomaly.count")])
def test_the_check_count_is_named_as_the_targeted_release_names_it(version, column):
    from orchzip.runtime.wallaroo_versions import anomaly_column
    batch = pa.RecordBatch.from_pylist(reference_rows()[:3])
    result = OnnxModel(RF_MODEL, anomaly_column=anomaly_column(version)).infer_batch(batch)
    assert result.schema.names == ["time", "in.tensor", "out.variable", column]
    assert result.column(column).to_pylist() == [0, 0, 0]


class ListSink(Sink):
    def __init__(self, fail_after=None):
        self.batches, self.committed, self.aborted, self.fail_after = [], False, False, fail_after

    def write(self, batch):
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("sink broke")
        self.batches.append(batch)

    def commit(self):
        self.committed = True

    def abort(self):
        self.aborted = True


class ListSource:
    def __init__(self, rows):
        self.table = pa.Table.from_pylist(rows)

    def batches(self, batch_size):
        return iter(self.table.to_batches(batch_size))


def test_loop_streams_batches_and_commits_once():
    rows = reference_rows()
    sink = ListSink()
    stats = orchzip_shim.run(ListSource(rows), OnnxModel(RF_MODEL), sink, batch_size=128)
    assert (stats.rows_read, stats.rows_written, stats.batches) == (1000, 1000, 8)
    assert sink.committed and not sink.aborted
    assert max(b.num_rows for b in sink.batches) == 128


def test_loop_aborts_the_sink_when_a_batch_fails():
    sink = ListSink(fail_after=2)
    with pytest.raises(RuntimeError):
        orchzip_shim.run(ListSource(reference_rows()), OnnxModel(RF_MODEL), sink, batch_size=100)
    assert sink.aborted and not sink.committed


def test_a_row_of_the_wrong_width_names_the_row_and_the_width():
    rows = reference_rows()[:300]
    rows[257] = {"tensor": rows[257]["tensor"][:17]}
    with pytest.raises(BadInput, match=r"row 257 .* has 17 values; .* expects 18"):
        orchzip_shim.run(ListSource(rows), OnnxModel(RF_MODEL), ListSink(), batch_size=100)


def test_a_missing_model_file_is_named(tmp_path):
    with pytest.raises(ModelError, match="nothere.onnx"):
        OnnxModel(tmp_path / "nothere.onnx")


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load model"):
        OnnxModel(bad)


def test_context_lists_known_names_for_unknown_ones():
    ctx = TaskContext.from_local_dict({"connections": {"a": {"type": "FILE", "details": {}}}, "pipelines": {"p": {"model": RF_MODEL}}})
    with pytest.raises(UnknownConnection, match=r"'b' \(known: a\)"):
        ctx.connection("b")
    with pytest.raises(UnknownPipeline, match=r"'q' \(known: p\)"):
        ctx.pipeline("q")


def test_env_references_expand_at_run_time_only():
    details = {"key": "${OZ_SECRET}", "nested": ["x${OZ_SECRET}"]}
    assert expand_env(details, {"OZ_SECRET": "s3"}) == {"key": "s3", "nested": ["xs3"]}
    with pytest.raises(ConfigError, match="OZ_MISSING"):
        expand_env({"key": "${OZ_MISSING}"}, {})


def test_bad_batch_size_is_refused():
    with pytest.raises(ConfigError, match="batch size"):
        orchzip_shim.run(ListSource([]), OnnxModel(RF_MODEL), ListSink(), batch_size=0)


def test_importing_the_shim_loads_no_connector_or_model_library():
    import subprocess
    import sys

    code = (
        "import sys, orchzip_shim; "
        "print(sorted(m for m in ('pyarrow', 'numpy', 'duckdb', 'onnxruntime', 'google', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("make", [
    lambda rows: pa.array(rows, pa.list_(pa.float64())),
    lambda rows: pa.array(rows, pa.large_list(pa.float64())),
    lambda rows: pa.array(rows, pa.list_(pa.float64(), 18)),
    lambda rows: pa.array([[int(v) for v in r] for r in rows], pa.list_(pa.int64())),
    lambda rows: pa.chunked_array([pa.array(rows[:7], pa.list_(pa.float32())), pa.array(rows[7:], pa.list_(pa.float32()))]),
])
def test_tensors_of_every_list_kind_and_slices_of_them_give_the_same_features(make):
    from orchzip_shim.models import tensor_to_numpy

    rows = [r["tensor"] for r in reference_rows()[:20]]
    column = make(rows)
    expected = np.array([[float(type_cast) for type_cast in r] for r in column.to_pylist()], dtype=np.float32)
    for start, stop in ((0, 20), (3, 11), (19, 20)):
        part = column[start:stop] if isinstance(column, pa.ChunkedArray) else column.slice(start, stop - start)
        np.testing.assert_array_equal(tensor_to_numpy(part, "tensor", 18, 0, "m"), expected[start:stop])


def test_a_null_tensor_and_a_null_value_inside_one_are_named():
    from orchzip_shim.models import tensor_to_numpy

    with pytest.raises(BadInput, match="row 12 has no value"):
        tensor_to_numpy(pa.array([[1.0, 2.0], [3.0, 4.0], None], pa.list_(pa.float64())).slice(1), "tensor", 2, 11, "m")
    with pytest.raises(BadInput, match="null values inside"):
        tensor_to_numpy(pa.array([[1.0, None]], pa.list_(pa.float64())), "tensor", 2, 0, "m")


def test_outputs_of_every_dtype_become_one_list_per_row():
    from orchzip_shim.models import _list_per_row

    for values in (np.arange(6, dtype=np.float32).reshape(3, 2), np.arange(3, dtype=np.int64),
                   np.array([True, False, True]), np.array(["a", "b", "c"]), np.arange(6.0).reshape(3, 2)[:, 1]):
        column = _list_per_row(values)
        assert column.to_pylist() == [list(np.atleast_1d(v).tolist()) for v in values]
