"""orchzip serve's inference answers follow the targeted Wallaroo release's result shape."""

import pyarrow as pa
import pytest
from starlette.datastructures import QueryParams

from conftest import RF_MODEL, reference_rows
from orchzip.runtime.server._inference import ModelCache, records


def answer(version, query="", monkeypatch=None):
    monkeypatch.setenv("ORCHZIP_WALLAROO_VERSION", version)
    pipeline = {"name": "houses", "model_path": RF_MODEL, "tensor_column": None}
    batch = ModelCache().get(pipeline).infer_batch(pa.RecordBatch.from_pylist(reference_rows()[:2]))
    return batch, records(batch, {"pipeline": pipeline, "last_model": {"path": RF_MODEL}, "elapsed": 1},
                          QueryParams(query))


@pytest.mark.parametrize("version", ["2024.1.0", "2026.1.3"])
def test_current_releases_answer_an_anomaly_count(version, monkeypatch):
    batch, rows = answer(version, monkeypatch=monkeypatch)
    assert batch.schema.names[-1] == "anomaly.count"
    assert set(rows[0]) == {"time", "in", "out", "anomaly", "metadata"} and rows[0]["anomaly"] == {"count": 0}
    _, flat = answer(version, "dataset.separator=.&dataset.exclude=metadata", monkeypatch)
    assert set(flat[0]) == {"time", "in.tensor", "out.variable", "anomaly.count"} and flat[0]["anomaly.count"] == 0


def test_the_seeds_release_answers_check_failures(monkeypatch):
    batch, rows = answer("2023.2.1", monkeypatch=monkeypatch)
    assert batch.schema.names == ["time", "in.tensor", "out.variable", "check_failures"]
    assert set(rows[0]) == {"time", "in", "out", "check_failures", "metadata"} and rows[0]["check_failures"] == []
    _, only = answer("2023.2.1", "dataset=check_failures", monkeypatch)  # as the 2023 SDK names it
    assert only[0] == {"check_failures": []}
