"""BIGQUERY connections against a real bqemulator with the official client: reads, all-or-nothing
writes, retries without duplicates, and one-line errors."""

import http.server
import io
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid

import numpy as np
import pyarrow as pa
import pytest

import orchzip_shim
from orchzip_shim.connectors import bigquery_connector as bqc
from orchzip_shim.connectors import open_sink, open_source
from orchzip_shim.context import Connection
from orchzip_shim.errors import BadInput, MissingDependency, OrchzipError
from orchzip_shim.models import OnnxModel
from conftest import REPO, RF_MODEL, reference_rows

pytestmark = pytest.mark.timeout(180)

# What a model's results make, targeting the current Wallaroo release (anomaly.count).
OUTPUT_SCHEMA = [("time", "DATETIME", "NULLABLE"), ("in_tensor", "FLOAT64", "REPEATED"),
                 ("out_variable", "FLOAT64", "REPEATED"), ("anomaly_count", "INT64", "NULLABLE")]


def rename(column):
    return column.replace(".", "_")


@pytest.fixture
def dataset(bq_emulator):
    """A fresh dataset per test, so tests never see each other's tables."""
    name = "ds_" + uuid.uuid4().hex[:10]
    client = bq_emulator.client()
    client.create_dataset(name)
    yield name
    client.delete_dataset(name, delete_contents=True, not_found_ok=True)
    client.close()


@pytest.fixture(scope="module")
def houses():
    return [row["tensor"] for row in reference_rows()]


def load_inputs(emulator, dataset, rows, table="inputs"):
    """The tutorial's input table: one ``tensor ARRAY<FLOAT64>`` column."""
    from google.cloud import bigquery

    import pyarrow.parquet as pq

    client = emulator.client()
    buffer = io.BytesIO()
    pq.write_table(pa.table({"tensor": pa.array(rows, pa.list_(pa.float64()))}), buffer)
    config = bigquery.LoadJobConfig(source_format="PARQUET",
                                    schema=[bigquery.SchemaField("tensor", "FLOAT64", mode="REPEATED")])
    config.parquet_options = bigquery.ParquetOptions()
    config.parquet_options.enable_list_inference = True
    client.load_table_from_file(buffer, f"{emulator.project}.{dataset}.{table}", job_config=config,
                                rewind=True).result()
    client.close()


def table_rows(emulator, dataset, table):
    client = emulator.client()
    rows = client.list_rows(f"{emulator.project}.{dataset}.{table}").to_arrow(create_bqstorage_client=False)
    schema = [(f.name, f.field_type, f.mode) for f in client.get_table(f"{emulator.project}.{dataset}.{table}").schema]
    client.close()
    return rows, schema


def connection(emulator, dataset, table, key=None, **extra):
    return Connection("bq", "BIGQUERY", emulator.details(dataset, table, key=key, **extra))


def result_batch(rows, offset=0):
    n = len(rows)
    return pa.RecordBatch.from_pydict({
        "time": pa.array(np.full(n, np.datetime64("2024-05-01T12:00:00.250", "ms")), pa.timestamp("ms")),
        "in.tensor": pa.array(rows, pa.list_(pa.float64())),
        "out.variable": pa.array([[float(offset + i)] for i in range(n)], pa.list_(pa.float32())),
        "anomaly.count": pa.array(np.zeros(n, np.int64)),
    })


def write(conn, batches, **options):
    with open_sink(conn, rename=rename, **options) as sink:
        for batch in batches:
            sink.write(batch)
    return getattr(sink, "_inner", sink)  # the BigQuery sink inside the renaming one


# -- reads ------------------------------------------------------------------------------


def test_a_table_streams_as_list_arrays_in_batches_of_the_asked_size(bq_emulator, dataset, houses):
    load_inputs(bq_emulator, dataset, houses)
    with open_source(connection(bq_emulator, dataset, "inputs")) as source:
        batches = list(source.batches(300))
    assert [b.num_rows for b in batches] == [300, 300, 300, 100]
    assert batches[0].schema.field("tensor").type == pa.list_(pa.float64())
    got = pa.Table.from_batches(batches).column("tensor").to_pylist()
    assert sorted(map(tuple, got)) == sorted(map(tuple, houses))


def test_a_query_streams_its_result(bq_emulator, dataset, houses):
    load_inputs(bq_emulator, dataset, houses)
    query = f"SELECT tensor FROM `{bq_emulator.project}.{dataset}.inputs` LIMIT 25"
    with open_source(connection(bq_emulator, dataset, "inputs"), query=query) as source:
        batches = list(source.batches(10))
    assert [b.num_rows for b in batches] == [10, 10, 5]
    assert batches[0].column(0).type == pa.list_(pa.float64())


def test_the_table_option_overrides_the_details_table(bq_emulator, dataset, houses):
    load_inputs(bq_emulator, dataset, houses[:7], table="other")
    with open_source(connection(bq_emulator, dataset, "inputs"), table="other") as source:
        assert sum(b.num_rows for b in source.batches(100)) == 7


# -- the tutorial's job through the shim loop -------------------------------------------


def test_predictions_land_in_a_created_output_table_one_row_per_input(bq_emulator, dataset, houses):
    load_inputs(bq_emulator, dataset, houses)
    model = OnnxModel(RF_MODEL, name="houseprice")
    source = open_source(connection(bq_emulator, dataset, "inputs"))
    sink = open_sink(connection(bq_emulator, dataset, "results"), mode="overwrite", rename=rename, create=True)
    stats = orchzip_shim.run(source, model, sink, batch_size=256)
    assert stats.rows_written == len(houses)

    rows, schema = table_rows(bq_emulator, dataset, "results")
    assert schema == OUTPUT_SCHEMA
    assert rows.num_rows == len(houses)
    expected = model._session.run(None, {model.input_name: np.array(houses, np.float32)})[0].reshape(-1)
    want = sorted(zip(map(tuple, houses), expected.tolist()))
    got = sorted(zip(map(tuple, rows.column("in_tensor").to_pylist()),
                     [v[0] for v in rows.column("out_variable").to_pylist()]))
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-6)
    assert set(rows.column("anomaly_count").to_pylist()) == {0}


def test_append_adds_rows_and_overwrite_replaces_them(bq_emulator, dataset, houses):
    conn = connection(bq_emulator, dataset, "results")
    write(conn, [result_batch(houses[:5])], create=True)
    write(conn, [result_batch(houses[5:8])], mode="append")
    assert table_rows(bq_emulator, dataset, "results")[0].num_rows == 8
    write(conn, [result_batch(houses[:2])], mode="overwrite")
    rows = table_rows(bq_emulator, dataset, "results")[0]
    assert rows.num_rows == 2
    assert rows.column("time").to_pylist()[0].isoformat() == "2024-05-01T12:00:00.250000"


def test_a_failed_run_leaves_the_output_table_unchanged(bq_emulator, dataset, houses):
    conn = connection(bq_emulator, dataset, "results")
    write(conn, [result_batch(houses[:4])], create=True)
    with pytest.raises(RuntimeError):
        with open_sink(conn, mode="overwrite", rename=rename) as sink:
            sink.write(result_batch(houses[:100]))
            raise RuntimeError("the model failed mid-run")
    assert table_rows(bq_emulator, dataset, "results")[0].num_rows == 4


KILLED_WRITER = """
import sys, pyarrow as pa, numpy as np
from orchzip_shim.context import Connection
from orchzip_shim.connectors import open_sink
details = __import__("json").loads(sys.argv[1])
sink = open_sink(Connection("bq", "BIGQUERY", details), mode="overwrite")
n = 2000
batch = pa.RecordBatch.from_pydict({
    "time": pa.array(np.full(n, np.datetime64("2024-01-01", "ms")), pa.timestamp("ms")),
    "in_tensor": pa.array(np.ones((n, 18)).tolist(), pa.list_(pa.float64())),
    "out_variable": pa.array([[1.0]] * n, pa.list_(pa.float32())),
    "anomaly_count": pa.array(np.zeros(n, np.int64)),
})
for _ in range(5):
    sink.write(batch)
print("written", flush=True)
sys.stdin.read()  # killed here, before commit
"""


def test_a_run_killed_during_its_write_leaves_the_output_table_unchanged(bq_emulator, dataset, houses):
    conn = connection(bq_emulator, dataset, "results")
    write(conn, [result_batch(houses[:3])], create=True)
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, json.dumps(conn.details)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert process.stdout.readline().strip() == "written"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    assert table_rows(bq_emulator, dataset, "results")[0].num_rows == 3


def test_a_retried_run_adds_no_duplicates(bq_emulator, dataset, houses):
    conn = connection(bq_emulator, dataset, "results")
    first = write(conn, [result_batch(houses[:10]), result_batch(houses[10:20])], create=True, run_id="run-42")
    # The retry's results carry a later time, as a real retry's would.
    second = write(conn, [result_batch(houses[:20])], create=True, run_id="run-42")
    assert first.job_id == second.job_id
    assert table_rows(bq_emulator, dataset, "results")[0].num_rows == 20
    write(conn, [result_batch(houses[:5])], run_id="run-43")
    assert table_rows(bq_emulator, dataset, "results")[0].num_rows == 25


def test_the_run_id_comes_from_the_runner_environment(bq_emulator, dataset, houses, monkeypatch):
    monkeypatch.setenv("ORCHZIP_RUN_ID", "r-" + uuid.uuid4().hex[:8])
    conn = connection(bq_emulator, dataset, "results")
    write(conn, [result_batch(houses[:6])], create=True)
    write(conn, [result_batch(houses[:6])], create=True)
    assert table_rows(bq_emulator, dataset, "results")[0].num_rows == 6


def test_on_wallaroo_the_same_results_of_a_task_load_once(bq_emulator, dataset, houses, monkeypatch):
    monkeypatch.delenv("ORCHZIP_RUN_ID", raising=False)
    monkeypatch.setenv("WALLAROO_TASK_ID", "task-" + uuid.uuid4().hex[:8])
    conn = connection(bq_emulator, dataset, "results")
    write(conn, [result_batch(houses[:6])], create=True)
    write(conn, [result_batch(houses[:6])], create=True)  # a retry of the same task
    assert table_rows(bq_emulator, dataset, "results")[0].num_rows == 6
    write(conn, [result_batch(houses[6:9])], create=True)  # the next run, other results
    assert table_rows(bq_emulator, dataset, "results")[0].num_rows == 9


# -- the service-account flow and its errors --------------------------------------------


def test_a_service_account_key_goes_through_the_token_flow(bq_emulator, dataset, houses, bq_service_account_key,
                                                           bq_token_server):
    load_inputs(bq_emulator, dataset, houses[:3])
    before = bq_token_server.requests
    with open_source(connection(bq_emulator, dataset, "inputs", key=bq_service_account_key)) as source:
        assert sum(b.num_rows for b in source.batches(10)) == 3
    assert bq_token_server.requests > before


def assert_one_line_without_secrets(err, key):
    text = str(err)
    assert "\n" not in text
    assert key["private_key"] not in text
    assert "PRIVATE KEY" not in text and key["private_key_id"] not in text
    assert "PRIVATE KEY" not in repr(err)


def test_a_refused_key_is_a_one_line_credentials_error(bq_emulator, dataset, houses, bq_service_account_key,
                                                       bq_token_server):
    load_inputs(bq_emulator, dataset, houses[:3])
    key = dict(bq_service_account_key, token_uri=bq_token_server.url + "/refuse")
    with pytest.raises(bqc.BadCredentials) as caught:
        open_source(connection(bq_emulator, dataset, "inputs", key=key))
    assert "orchzip-tests@test.iam.gserviceaccount.com" in str(caught.value)
    assert "invalid_grant" in str(caught.value)
    assert_one_line_without_secrets(caught.value, key)


@pytest.mark.parametrize("broken", ["garbled_key", "missing_email"])
def test_a_malformed_key_is_a_one_line_credentials_error(bq_emulator, dataset, bq_service_account_key, broken):
    key = dict(bq_service_account_key)
    if broken == "garbled_key":
        key["private_key"] = key["private_key"][:200] + "AAAA" + key["private_key"][260:]
    else:
        del key["client_email"]
    with pytest.raises(bqc.BadCredentials) as caught:
        open_source(connection(bq_emulator, dataset, "inputs", key=key))
    assert_one_line_without_secrets(caught.value, key)
    if broken == "missing_email":
        assert "client_email" in str(caught.value)


def test_no_repr_shows_the_key(bq_emulator, dataset, houses, bq_service_account_key):
    load_inputs(bq_emulator, dataset, houses[:1])
    conn = connection(bq_emulator, dataset, "inputs", key=bq_service_account_key)
    source = open_source(conn)
    sink = open_sink(connection(bq_emulator, dataset, "out", key=bq_service_account_key), create=True)
    for thing in (conn, source, sink, source.settings, sink.settings):
        assert "PRIVATE" not in repr(thing) and bq_service_account_key["private_key_id"] not in repr(thing)
    source.close()
    sink.abort()


def test_a_missing_dataset_is_named(bq_emulator):
    with pytest.raises(bqc.MissingTable, match=r"dataset test\.no_such_dataset does not exist"):
        open_source(connection(bq_emulator, "no_such_dataset", "inputs"))
    with pytest.raises(bqc.MissingTable, match=r"dataset test\.no_such_dataset does not exist"):
        open_sink(connection(bq_emulator, "no_such_dataset", "results"), create=True)


def test_a_missing_table_is_named(bq_emulator, dataset):
    with pytest.raises(bqc.MissingTable, match=rf"table test\.{dataset}\.nope does not exist"):
        open_source(connection(bq_emulator, dataset, "nope"))
    with pytest.raises(bqc.MissingTable, match=rf"table test\.{dataset}\.nope does not exist.*create=True"):
        open_sink(connection(bq_emulator, dataset, "nope"))


def test_results_that_do_not_fit_the_table_name_the_columns(bq_emulator, dataset, houses):
    conn = connection(bq_emulator, dataset, "results")
    write(conn, [result_batch(houses[:2])], create=True)
    extra = result_batch(houses[:2]).append_column("score", pa.array([1.0, 2.0]))
    with pytest.raises(BadInput, match=r"it has no column score \(table columns: time, in_tensor, "):
        write(conn, [extra])
    wrong_type = result_batch(houses[:2]).set_column(3, "anomaly.count", pa.array(["a", "b"]))
    with pytest.raises(BadInput, match=r"column 'anomaly_count' is string but the table's column is INT64"):
        write(conn, [wrong_type])
    missing = result_batch(houses[:2]).remove_column(1)
    with pytest.raises(BadInput, match=r"they have no column in_tensor, which the table requires"):
        write(conn, [missing])
    assert table_rows(bq_emulator, dataset, "results")[0].num_rows == 2


# -- quota and transient errors -----------------------------------------------------------


class FlakyProxy:
    """Answers the first ``failures`` requests with 503 backendError, forwards the rest."""

    def __init__(self, target, failures, status=503, reason="backendError"):
        self.target, self.failures, self.seen = target, failures, 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                proxy.seen += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.seen <= proxy.failures:
                    payload = json.dumps({"error": {"code": status, "message": "Backend Error, try later",
                                                    "errors": [{"reason": reason, "message": "try later"}]}}).encode()
                    self.send_response(status)
                else:
                    request = urllib.request.Request(proxy.target + self.path, data=body or None, method=self.command,
                                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                    try:
                        with urllib.request.urlopen(request, timeout=30) as answer:
                            payload, code = answer.read(), answer.status
                    except urllib.error.HTTPError as err:
                        payload, code = err.read(), err.code
                    self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_transient_errors_are_retried_then_the_run_goes_on(bq_emulator, dataset, houses):
    load_inputs(bq_emulator, dataset, houses[:4])
    proxy = FlakyProxy(bq_emulator.rest_url, failures=2, status=429, reason="rateLimitExceeded")
    try:
        conn = Connection("bq", "BIGQUERY", dict(bq_emulator.details(dataset, "inputs"), api_endpoint=proxy.url))
        with open_source(conn) as source:
            assert sum(b.num_rows for b in source.batches(10)) == 4
    finally:
        proxy.close()
    assert proxy.seen > 2


def test_transient_errors_that_persist_fail_clearly_after_bounded_retries(bq_emulator, dataset):
    proxy = FlakyProxy(bq_emulator.rest_url, failures=10**6)
    try:
        conn = Connection("bq", "BIGQUERY", dict(bq_emulator.details(dataset, "inputs"), api_endpoint=proxy.url,
                                                 retries=2))
        with pytest.raises(bqc.BigQueryUnavailable) as caught:
            open_source(conn)
    finally:
        proxy.close()
    assert proxy.seen == 3
    assert "gave up after 3 attempts" in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, orchzip_shim.errors.TransientError)


def test_an_unreachable_endpoint_is_a_transient_error(dataset, bq_emulator):
    from tests.support.bq import free_port

    conn = Connection("bq", "BIGQUERY", dict(bq_emulator.details(dataset, "inputs"),
                                             api_endpoint=f"http://127.0.0.1:{free_port()}", retries=1))
    with pytest.raises(bqc.BigQueryUnavailable, match="gave up after 2 attempts"):
        open_source(conn)


# -- dependencies -----------------------------------------------------------------------


def test_without_the_client_library_the_error_gives_the_pip_line():
    code = (
        "import sys; sys.modules['google.cloud.bigquery'] = None\n"
        "from orchzip_shim.context import Connection\n"
        "from orchzip_shim.errors import MissingDependency\n"
        "try:\n"
        "    Connection('bq', 'BIGQUERY', {'dataset': 'd', 'table': 't'}).source()\n"
        "except MissingDependency as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "pip install google-cloud-bigquery google-auth" in done.stdout, done.stderr


def test_asking_for_the_storage_api_without_its_library_gives_the_pip_line(bq_emulator, dataset):
    pytest.importorskip("google.cloud.bigquery")
    try:
        import google.cloud.bigquery_storage_v1  # noqa: F401
        pytest.skip("google-cloud-bigquery-storage is installed here")
    except ImportError:
        pass
    with pytest.raises(MissingDependency, match="pip install google-cloud-bigquery-storage"):
        open_source(connection(bq_emulator, dataset, "inputs", read_api="storage"))


def test_the_shim_imports_no_google_library_until_a_bigquery_connection_is_used():
    code = ("import sys, orchzip_shim.connectors.bigquery_connector\n"
            "print(sorted(m for m in sys.modules if m.startswith('google')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.stdout.strip() == "[]", done.stderr


def test_errors_are_orchzip_errors(bq_emulator):
    with pytest.raises(OrchzipError):
        open_source(connection(bq_emulator, "nowhere", "t"))
    assert os.path.exists(RF_MODEL)
