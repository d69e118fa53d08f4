"""The Wallaroo BigQuery tutorial's orchestration, unmodified, against bqemulator on loopback.

The task reads ``SELECT tensor FROM dataset.table`` with the input connection's
service-account key (its token comes from a token server on loopback), infers with the local
pipeline and streams the results into the output table with ``insert_rows_from_dataframe``.
The connections name the emulator under ``api_endpoint``; the stand-in points the task's own
``bigquery.Client`` there through ``BIGQUERY_EMULATOR_HOST``.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import pytest

from conftest import REPO, RF_MODEL, reference_rows

FIXTURE = os.path.join(REPO, "tests", "fixtures", "wallaroo", "houseprice_bigquery")
ENV_BUILD_TIMEOUT = 900


@pytest.fixture
def tutorial_tables(bq_emulator):
    """The tutorial's input table (1000 houses) and empty output table, in a fresh dataset."""
    from google.api_core.retry import Retry
    from google.cloud import bigquery

    client = bq_emulator.client()
    dataset = _fresh_dataset(client)
    inputs = bigquery.Table(f"{bq_emulator.project}.{dataset}.inputs",
                            schema=[bigquery.SchemaField("tensor", "FLOAT64", mode="REPEATED")])
    outputs = bigquery.Table(f"{bq_emulator.project}.{dataset}.outputs", schema=[
        bigquery.SchemaField("time", "DATETIME"),
        bigquery.SchemaField("in_tensor", "FLOAT64", mode="REPEATED"),
        bigquery.SchemaField("out_variable", "FLOAT64", mode="REPEATED"),
        bigquery.SchemaField("check_failures", "INT64"),
    ])
    client.create_table(inputs)
    client.create_table(outputs)
    rows = [{"tensor": r["tensor"]} for r in reference_rows()]
    for start in range(0, len(rows), 500):
        errors = client.insert_rows_json(inputs, rows[start:start + 500], retry=Retry(deadline=30))
        assert not errors, errors[:3]
    return client, dataset


def _fresh_dataset(client):
    existing = {d.dataset_id for d in client.list_datasets()}
    number = 0
    while f"houseprice{number}" in existing:
        number += 1
    client.create_dataset(f"houseprice{number}")
    return f"houseprice{number}"


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
def test_the_bigquery_tutorial_orchestration_writes_a_prediction_for_every_house(
    orchzip_cli, tmp_path, bq_emulator, bq_service_account_key, bq_token_server, tutorial_tables,  # noqa: F811
):
    client, dataset = tutorial_tables
    tokens_before = bq_token_server.requests
    # The seed's tutorial on the seed's Wallaroo release, whose results name the check count
    # check_failures, as its output table does.
    env = {"ORCHZIP_ENV_CACHE": os.environ.get("ORCHZIP_ENV_CACHE") or str(tmp_path / "envs"),
           "ORCHZIP_WALLAROO_VERSION": "2023.2.1"}

    def cli(*argv):
        return orchzip_cli(*argv, timeout=ENV_BUILD_TIMEOUT, env=env)

    for name, table in (("bigqueryhouseinputs", "inputs"), ("bigqueryhouseoutputs", "outputs")):
        details = bq_emulator.details(dataset, table, key=bq_service_account_key)
        assert cli("connections", "create", name, "--type", "BIGQUERY", "--details", json.dumps(details)).code == 0
    assert cli("pipelines", "create", "bigquerypipeline", "--model", RF_MODEL).code == 0
    built = cli("build", FIXTURE, "-o", str(tmp_path / "dist"))
    assert built.code == 0, built

    result = cli("run", str(tmp_path / "dist" / "houseprice_bigquery.zip"))
    assert result.code == 0, result
    assert "input connection: bigqueryhouseinputs (BIGQUERY)" in result.out
    assert "houses read: 1000" in result.out
    assert "rows inserted: 1000" in result.out
    assert bq_service_account_key["private_key"].splitlines()[1] not in result.out + result.err
    assert bq_token_server.requests > tokens_before  # the key's own credentials flow ran

    rows = list(client.query(
        f"SELECT time, in_tensor, out_variable, check_failures FROM {dataset}.outputs"
    ).result())
    assert len(rows) == 1000
    predicted = {tuple(r["in_tensor"]): r["out_variable"][0] for r in rows}
    houses = [r["tensor"] for r in reference_rows()]
    x = np.array(houses, dtype=np.float32)
    expected = ort.InferenceSession(RF_MODEL).run(None, {"float_input": x})[0].ravel()
    assert len(predicted) == len({tuple(h) for h in houses})
    np.testing.assert_allclose([predicted[tuple(h)] for h in houses], expected, rtol=1e-6)
    assert all(r["check_failures"] == 0 and r["time"] is not None for r in rows)
