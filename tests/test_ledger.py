"""The sinks' ledgers: a commit of an idempotency key already committed writes nothing.

In-process, against real DuckDB files and real files: sequential retries, concurrent retries
of one key (one wins, the other is a no-op), overwrite and append, retention, and the ledger
as users query it.
"""

import datetime
import json
import os
import threading

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchzip_shim import Connection
from orchzip_shim.connectors import duckdb_connector, open_sink

pytestmark = pytest.mark.timeout(60)


def batch(n, start=0):
    return pa.record_batch({"x": pa.array(range(start, start + n), pa.int64())})


def connection(kind, tmp_path, **details):
    if kind == "DUCKDB":
        return Connection("out", "DUCKDB", dict({"path": str(tmp_path / "out.duckdb"), "table": "results"}, **details))
    return Connection("out", "FILE", dict({"path": str(tmp_path / "out.parquet")}, **details))


def rows(conn):
    if conn.type == "DUCKDB":
        db = duckdb_connector._databases.get(conn.details["path"])
        cursor = db.cursor() if db else duckdb.connect(conn.details["path"])
        try:
            return sorted(r[0] for r in cursor.execute("SELECT x FROM results").fetchall())
        finally:
            cursor.close()
    return sorted(pq.read_table(conn.details["path"]).column("x").to_pylist())


@pytest.fixture(autouse=True)
def fresh_duckdb_handles():
    yield
    for path in list(duckdb_connector._databases):
        duckdb_connector._databases.pop(path).close()


def commit(conn, key, run, n=10, start=0, mode="append", monkeypatch=None):
    if monkeypatch is not None:
        monkeypatch.setenv("ORCHZIP_RUN_ID", run)
    with open_sink(conn, mode=mode, idempotency_key=key) as sink:
        sink.write(batch(n, start))
    return sink


@pytest.mark.parametrize("kind", ["DUCKDB", "FILE"])
@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_a_retry_of_a_committed_key_writes_nothing_and_names_the_run_that_did(tmp_path, monkeypatch, kind, mode):
    conn = connection(kind, tmp_path)
    first = commit(conn, "task-1@09:00", "run-a", mode=mode, monkeypatch=monkeypatch)
    assert first.already_committed_by is None
    retry = commit(conn, "task-1@09:00", "run-b", start=100, mode=mode, monkeypatch=monkeypatch)
    assert retry.already_committed_by == "run-a"
    assert rows(conn) == list(range(10))
    other = commit(conn, "task-1@10:00", "run-c", start=100, mode=mode, monkeypatch=monkeypatch)
    assert other.already_committed_by is None
    assert rows(conn) == (list(range(10)) + list(range(100, 110)) if mode == "append" else list(range(100, 110)))


@pytest.mark.parametrize("kind", ["DUCKDB", "FILE"])
def test_concurrent_retries_of_one_key_write_once(tmp_path, kind):
    conn = connection(kind, tmp_path)
    start = threading.Barrier(4)
    sinks, errors = [], []

    def retry(number):
        try:
            with open_sink(conn, mode="append", idempotency_key="task-1@09:00") as sink:
                sink.ledger_run = f"run-{number}"
                sink.write(batch(10))
                sinks.append(sink)
                start.wait(10)  # every sink has written; now all commit at once
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=retry, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    winners = [s for s in sinks if s.already_committed_by is None]
    assert len(winners) == 1
    assert {s.already_committed_by for s in sinks if s is not winners[0]} == {winners[0].ledger_run}
    assert rows(conn) == list(range(10))


def test_the_duckdb_ledger_says_which_run_wrote_which_rows_and_keeps_its_retention(tmp_path, monkeypatch):
    conn = connection("DUCKDB", tmp_path, ledger_retention_days=7)
    commit(conn, "k-old", "run-old", monkeypatch=monkeypatch)
    db = duckdb_connector._databases[conn.details["path"]]
    db.execute("UPDATE __orchzip_ledger SET committed_at = now() - INTERVAL 8 DAY WHERE key = 'k-old'")
    commit(conn, "k-new", "run-new", n=5, monkeypatch=monkeypatch)
    ledger = db.execute("SELECT key, target, run_id, rows, mode FROM __orchzip_ledger ORDER BY key").fetchall()
    assert ledger == [("k-new", "results", "run-new", 5, "append")]


def test_the_file_ledger_is_a_sidecar_that_expires_old_keys(tmp_path, monkeypatch):
    conn = connection("FILE", tmp_path, ledger_retention_days=7)
    commit(conn, "k-old", "run-old", monkeypatch=monkeypatch)
    ledger_path = tmp_path / ".out.parquet.orchzip-ledger.json"
    ledger = json.loads(ledger_path.read_text())
    old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=8)).isoformat(timespec="seconds")
    ledger["entries"]["k-old"]["committed_at"] = old
    ledger_path.write_text(json.dumps(ledger))
    commit(conn, "k-new", "run-new", n=5, monkeypatch=monkeypatch)
    entries = json.loads(ledger_path.read_text())["entries"]
    assert list(entries) == ["k-new"] and entries["k-new"]["run_id"] == "run-new" and entries["k-new"]["rows"] == 5
    assert sorted(os.listdir(tmp_path)) == [".out.parquet.orchzip-ledger.json", ".out.parquet.orchzip-lock",
                                            "out.parquet"]


def test_a_file_replaced_outside_orchzip_is_written_again_for_a_known_key(tmp_path, monkeypatch):
    conn = connection("FILE", tmp_path)
    commit(conn, "k", "run-a", monkeypatch=monkeypatch)
    pq.write_table(pa.table({"x": pa.array([42], pa.int64())}), conn.details["path"])  # someone else's file now
    again = commit(conn, "k", "run-b", monkeypatch=monkeypatch)
    assert again.already_committed_by is None
    assert rows(conn) == list(range(10)) + [42]


def test_a_sink_without_a_key_leaves_no_ledger_in_duckdb(tmp_path, monkeypatch):
    monkeypatch.delenv("ORCHZIP_IDEMPOTENCY_KEY", raising=False)
    conn = connection("DUCKDB", tmp_path)
    with open_sink(conn, mode="append") as sink:
        sink.write(batch(3))
    db = duckdb_connector._databases[conn.details["path"]]
    assert [r[0] for r in db.execute("SELECT table_name FROM information_schema.tables").fetchall()] == ["results"]


# -- BigQuery (on the emulator): its job history is the ledger ------------------------------

@pytest.mark.timeout(120)
def test_a_bigquery_retry_of_a_committed_key_loads_nothing_and_says_so(bq_emulator, monkeypatch):
    from tests.test_bigquery_connector import connection as bq_connection, result_batch, table_rows, write

    name = "ledger_" + os.urandom(4).hex()
    client = bq_emulator.client()
    client.create_dataset(name)
    client.close()
    conn = bq_connection(bq_emulator, name, "results")
    rows_in = [[float(i)] * 18 for i in range(8)]
    monkeypatch.setenv("ORCHZIP_RUN_ID", "run-a")
    first = write(conn, [result_batch(rows_in)], create=True, idempotency_key="task-9@09:00")
    assert first.already_committed_by is None
    monkeypatch.setenv("ORCHZIP_RUN_ID", "run-b")
    retry = write(conn, [result_batch(rows_in)], create=True, idempotency_key="task-9@09:00")
    assert "run-a" in retry.already_committed_by and retry.job_id == first.job_id
    assert table_rows(bq_emulator, name, "results")[0].num_rows == 8
    write(conn, [result_batch(rows_in[:3])], idempotency_key="task-9@10:00")  # the next fire
    assert table_rows(bq_emulator, name, "results")[0].num_rows == 11


def test_duckdb_ledger_values_with_quotes_are_stored_as_given(tmp_path, monkeypatch):
    # The ledger's statements spell values out as SQL literals (no parameter binding).
    conn = connection("DUCKDB", tmp_path)
    key = "task-1@09:00'; DROP TABLE results; --"
    commit(conn, key, "run 'a'", monkeypatch=monkeypatch)
    retry = commit(conn, key, "run-b", start=100, monkeypatch=monkeypatch)
    assert retry.already_committed_by == "run 'a'"
    assert rows(conn) == list(range(10))
    db = duckdb_connector._databases[conn.details["path"]]
    assert db.execute("SELECT key, run_id FROM __orchzip_ledger").fetchall() == [(key, "run 'a'")]
