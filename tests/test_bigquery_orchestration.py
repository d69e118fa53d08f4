"""orchestrations/houseprice_bigquery through `orchzip run`, on a real bqemulator."""

import json
import os
import textwrap
import uuid

import numpy as np
import onnxruntime as ort
import pytest

from conftest import REPO, RF_MODEL, reference_rows
from tests.test_bigquery_connector import load_inputs, result_batch, table_rows, write
from orchzip_shim.context import Connection

HOUSEPRICE_BIGQUERY = os.path.join(REPO, "orchestrations", "houseprice_bigquery")


@pytest.fixture
def bq_setup(bq_emulator, bq_service_account_key, orchzip_cli):
    """Inputs in BigQuery, the tutorial's two connections (with a key), the reference model."""
    dataset = "houses_" + uuid.uuid4().hex[:8]
    client = bq_emulator.client()
    client.create_dataset(dataset)
    client.close()
    load_inputs(bq_emulator, dataset, [row["tensor"] for row in reference_rows()], table="houses")
    for name, table in (("houseprice_bq_inputs", "houses"), ("houseprice_bq_results", "results")):
        details = bq_emulator.details(dataset, table, key=bq_service_account_key,
                                      grpc_endpoint=bq_emulator.grpc_endpoint)
        assert orchzip_cli("connections", "create", name, "--type", "BIGQUERY",
                           "--details", json.dumps(details)).code == 0
    assert orchzip_cli("pipelines", "create", "houseprice", "--model", RF_MODEL).code == 0
    return dataset


def expected_predictions():
    x = np.array([r["tensor"] for r in reference_rows()], dtype=np.float32)
    return x, ort.InferenceSession(RF_MODEL).run(None, {"float_input": x})[0].ravel()


def assert_results_are_the_predictions(emulator, dataset, check_column="anomaly_count"):
    rows, schema = table_rows(emulator, dataset, "results")
    assert [(name, kind) for name, kind, _ in schema] == [
        ("time", "DATETIME"), ("in_tensor", "FLOAT64"), ("out_variable", "FLOAT64"), (check_column, "INT64")]
    x, expected = expected_predictions()
    assert rows.num_rows == len(expected)
    want = sorted(zip(map(tuple, x.astype(np.float64).tolist()), expected.tolist()))
    got = sorted(zip(map(tuple, rows.column("in_tensor").to_pylist()),
                     [v[0] for v in rows.column("out_variable").to_pylist()]))
    np.testing.assert_allclose(np.array([g[0] for g in got]), np.array([w[0] for w in want]), rtol=1e-6)
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-6)


@pytest.mark.timeout(180)
def test_the_reference_data_becomes_one_prediction_per_row(orchzip_cli, bq_emulator, bq_setup):
    result = orchzip_cli("run", HOUSEPRICE_BIGQUERY, "--no-env", "--arg", "batch_size=256", "--json")
    assert result.code == 0, result
    assert result.json()["rows_written"] == 1000
    assert_results_are_the_predictions(bq_emulator, bq_setup)
    logs = orchzip_cli("runs", "logs", result.json()["id"][:8]).out
    assert "read_api='rest'" in logs and "PRIVATE KEY" not in logs, logs


@pytest.mark.timeout(180)
def test_a_retried_run_adds_no_duplicates(orchzip_cli, bq_emulator, bq_setup):
    # Targeting the seed's Wallaroo release: its results name the check count check_failures.
    for _ in range(2):
        result = orchzip_cli("run", HOUSEPRICE_BIGQUERY, "--no-env", "--arg", "run_id=nightly-2024-05-01",
                             env={"ORCHZIP_WALLAROO_VERSION": "2023.2.1"})
        assert result.code == 0, result
    assert_results_are_the_predictions(bq_emulator, bq_setup, check_column="check_failures")


def killed_writer(tmp_path):
    """The orchestration's job, but it hangs after two batches: a timeout kills it mid-write."""
    folder = tmp_path / "bq_killed"
    folder.mkdir()
    (folder / "requirements.txt").write_text(open(os.path.join(HOUSEPRICE_BIGQUERY, "requirements.txt")).read())
    (folder / "main.py").write_text(textwrap.dedent("""
        import time
        import orchzip_shim

        task = orchzip_shim.current_task()
        sink = task.connection("houseprice_bq_results").sink(
            mode="overwrite", rename=lambda c: c.replace(".", "_"), create=True)

        def after_batch(stats):
            if stats.batches == 2:
                print("two batches written", flush=True)
                time.sleep(300)

        orchzip_shim.run(task.connection("houseprice_bq_inputs").source(), task.pipeline("houseprice"),
                         sink, batch_size=100, on_batch=after_batch)
    """))
    return str(folder)


@pytest.mark.timeout(180)
def test_a_run_killed_during_its_write_leaves_the_output_table_unchanged(orchzip_cli, bq_emulator, bq_setup,
                                                                          tmp_path):
    results = Connection("r", "BIGQUERY", bq_emulator.details(bq_setup, "results"))
    write(results, [result_batch([[1.0] * 18] * 3)], create=True)
    result = orchzip_cli("run", killed_writer(tmp_path), "--no-env", "--timeout", "6", "--json")
    assert result.code != 0, result
    assert result.json()["status"] == "timed_out", result.json()
    rows = table_rows(bq_emulator, bq_setup, "results")[0]
    assert rows.num_rows == 3 and rows.column("in_tensor").to_pylist()[0] == [1.0] * 18


@pytest.mark.timeout(180)
def test_a_missing_input_table_is_a_one_line_error(orchzip_cli, bq_emulator, bq_setup):
    details = bq_emulator.details(bq_setup, "no_such_table")
    assert orchzip_cli("connections", "create", "gone", "--type", "BIGQUERY", "--details", json.dumps(details)).code == 0
    result = orchzip_cli("run", HOUSEPRICE_BIGQUERY, "--no-env", "--arg", "input_connection=gone")
    assert result.code != 0
    errors = [line for line in result.err.splitlines() if line.startswith("orchzip: error:")]
    assert errors and f"table test.{bq_setup}.no_such_table does not exist" in errors[-1], result
    assert "Traceback" not in result.err


@pytest.mark.timeout(900)
def test_in_its_own_task_environment_it_reads_over_the_storage_read_api(orchzip_cli, bq_emulator, bq_setup):
    """The zip's requirements.txt brings google-cloud-bigquery-storage: reads go over gRPC."""
    result = orchzip_cli("run", HOUSEPRICE_BIGQUERY, "--arg", "batch_size=300", "--json", timeout=850)
    assert result.code == 0, result
    assert_results_are_the_predictions(bq_emulator, bq_setup)
    logs = orchzip_cli("runs", "logs", result.json()["id"][:8]).out
    assert "read_api='storage'" in logs, logs
