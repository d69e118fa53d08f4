"""One contract for every embedded connector: round trip, modes, all-or-nothing writes."""

import pyarrow as pa
import pytest

from orchzip_shim.connectors import duckdb_connector, open_sink, open_source
from orchzip_shim.context import Connection
from orchzip_shim.errors import BadInput, ConfigError

TARGETS = {
    "duckdb": lambda tmp: Connection("c", "DUCKDB", {"path": str(tmp / "db.duckdb"), "table": "results"}),
    "parquet": lambda tmp: Connection("c", "FILE", {"path": str(tmp / "out.parquet")}),
    "arrow": lambda tmp: Connection("c", "FILE", {"path": str(tmp / "out.arrow")}),
    "csv": lambda tmp: Connection("c", "FILE", {"path": str(tmp / "out.csv")}),
    "json": lambda tmp: Connection("c", "FILE", {"path": str(tmp / "out.json")}),
    "jsonl": lambda tmp: Connection("c", "FILE", {"path": str(tmp / "out.jsonl")}),
}


@pytest.fixture(params=sorted(TARGETS))
def connection(request, tmp_path, monkeypatch):
    # Tiny DuckDB chunks, so that these small tests go through the staging table's every path.
    monkeypatch.setattr(duckdb_connector, "INSERT_ROWS", 3)
    return TARGETS[request.param](tmp_path)


def batch(start, n):
    return pa.RecordBatch.from_pydict({
        "id": pa.array(range(start, start + n), pa.int64()),
        "tensor": pa.array([[float(i), float(i) / 2] for i in range(start, start + n)], pa.list_(pa.float64())),
    })


def read_all(connection, batch_size=7):
    source = open_source(connection)
    batches = list(source.batches(batch_size))
    source.close()
    assert all(b.num_rows <= batch_size for b in batches)
    return pa.Table.from_batches(batches).to_pydict() if batches else {"id": []}


def write(connection, batches, mode="append"):
    with open_sink(connection, mode=mode) as sink:
        for b in batches:
            sink.write(b)


def test_written_rows_read_back_in_batches_of_the_asked_size(connection):
    write(connection, [batch(0, 10), batch(10, 15)])
    got = read_all(connection)
    assert got["id"] == list(range(25))
    assert got["tensor"][3] == [3.0, 1.5]


def test_append_adds_rows_and_overwrite_replaces_them(connection):
    write(connection, [batch(0, 5)])
    write(connection, [batch(5, 5)], mode="append")
    assert read_all(connection)["id"] == list(range(10))
    write(connection, [batch(100, 3)], mode="overwrite")
    assert read_all(connection)["id"] == [100, 101, 102]


def test_a_failure_mid_stream_leaves_the_target_as_it_was(connection):
    write(connection, [batch(0, 4)])
    with pytest.raises(RuntimeError):
        with open_sink(connection, mode="overwrite") as sink:
            sink.write(batch(50, 4))
            raise RuntimeError("the task failed halfway")
    with pytest.raises(RuntimeError):
        with open_sink(connection, mode="append") as sink:
            sink.write(batch(60, 4))
            raise RuntimeError("the task failed halfway")
    assert read_all(connection)["id"] == [0, 1, 2, 3]


def test_a_failed_first_write_creates_nothing(connection, tmp_path):
    with pytest.raises(RuntimeError):
        with open_sink(connection, mode="overwrite") as sink:
            sink.write(batch(0, 4))
            raise RuntimeError("boom")
    if connection.type == "FILE":
        assert not any(p.name.startswith("out") or p.name.startswith(".out") for p in tmp_path.iterdir())
    else:
        with pytest.raises(ConfigError):
            read_all(connection)


def test_duckdb_rows_that_do_not_fit_the_table_name_the_columns(tmp_path):
    conn = TARGETS["duckdb"](tmp_path)
    write(conn, [batch(0, 2)])
    wrong = pa.RecordBatch.from_pydict({"other": pa.array([1, 2])})
    with pytest.raises(BadInput, match="other"):
        write(conn, [wrong])
    assert read_all(conn)["id"] == [0, 1]


def test_unknown_connection_type_lists_the_known_ones():
    with pytest.raises(ConfigError, match="DUCKDB, FILE"):
        open_source(Connection("c", "ORACLE", {}))


def test_missing_input_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.parquet"):
        open_source(Connection("c", "FILE", {"path": str(tmp_path / "nope.parquet")}))


def test_unreadable_input_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(BadInput, match="broken.parquet"):
        list(open_source(Connection("c", "FILE", {"path": str(path)})).batches(10))


def test_duckdb_query_source(tmp_path):
    conn = TARGETS["duckdb"](tmp_path)
    write(conn, [batch(0, 10)])
    query_conn = Connection("q", "DUCKDB", {"path": conn.details["path"], "query": "SELECT id FROM results WHERE id >= 7"})
    assert read_all(query_conn)["id"] == [7, 8, 9]


def duckdb_tables(path):
    import duckdb

    with duckdb.connect(path, read_only=True) as db:
        return sorted(r[0] for r in db.execute("SELECT table_name FROM information_schema.tables").fetchall())


def test_duckdb_staging_tables_never_outlive_their_sink(tmp_path, monkeypatch):
    monkeypatch.setattr(duckdb_connector, "INSERT_ROWS", 3)
    conn = TARGETS["duckdb"](tmp_path)
    write(conn, [batch(0, 10)])
    write(conn, [batch(10, 10)], mode="append")
    with pytest.raises(RuntimeError):
        with open_sink(conn, mode="append") as sink:
            sink.write(batch(50, 10))
            raise RuntimeError("boom")
    duckdb_connector._databases.pop(conn.details["path"]).close()
    assert duckdb_tables(conn.details["path"]) == ["results"]
    assert read_all(conn)["id"] == list(range(20))


def test_duckdb_staging_left_by_a_killed_process_is_dropped_by_the_next_sink(tmp_path):
    import duckdb

    conn = TARGETS["duckdb"](tmp_path)
    write(conn, [batch(0, 2)])
    duckdb_connector._databases.pop(conn.details["path"]).close()
    with duckdb.connect(conn.details["path"]) as db:  # as a process killed mid-run leaves it
        db.execute('CREATE TABLE "results__orchzip_staging_999999999_abcd" AS SELECT 1 AS x')
    write(conn, [batch(2, 2)], mode="append")
    duckdb_connector._databases.pop(conn.details["path"]).close()
    assert duckdb_tables(conn.details["path"]) == ["results"]
    assert read_all(conn)["id"] == [0, 1, 2, 3]


def test_duckdb_append_of_rows_that_do_not_fit_fails_at_the_first_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(duckdb_connector, "INSERT_ROWS", 1)
    conn = TARGETS["duckdb"](tmp_path)
    write(conn, [batch(0, 2)])
    sink = open_sink(conn, mode="append")
    with pytest.raises(BadInput, match="other"):
        sink.write(pa.RecordBatch.from_pydict({"other": pa.array([1, 2])}))
    assert read_all(conn)["id"] == [0, 1]


def test_duckdb_table_source_reads_every_row_once_in_order_around_gaps_and_views(tmp_path):
    conn = TARGETS["duckdb"](tmp_path)
    write(conn, [batch(0, 30)])
    db = duckdb_connector._database(conn, must_exist=True)
    db.execute("DELETE FROM results WHERE id BETWEEN 5 AND 16 OR id = 29")  # row ids with gaps
    db.execute("CREATE VIEW evens AS SELECT * FROM results WHERE id % 2 = 0")
    db.execute("CREATE TABLE nothing (id BIGINT)")
    expected = [i for i in range(30) if not 5 <= i <= 16 and i != 29]
    assert read_all(conn, batch_size=4)["id"] == expected
    view = Connection("v", "DUCKDB", {"path": conn.details["path"], "table": "evens"})
    assert read_all(view, batch_size=4)["id"] == [i for i in expected if i % 2 == 0]
    assert read_all(Connection("e", "DUCKDB", {"path": conn.details["path"], "table": "nothing"})) == {"id": []}


def test_duckdb_rows_added_to_a_table_while_it_is_read_are_not_read(tmp_path):
    conn = TARGETS["duckdb"](tmp_path)
    write(conn, [batch(0, 10)])
    source = open_source(conn)
    batches = source.batches(4)
    first = next(batches)
    duckdb_connector._database(conn, must_exist=True).execute("INSERT INTO results SELECT id + 100, tensor FROM results")
    ids = first.column(0).to_pylist() + [i for b in batches for i in b.column(0).to_pylist()]
    source.close()
    assert ids == list(range(10))
