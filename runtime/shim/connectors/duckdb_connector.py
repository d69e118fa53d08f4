"""DUCKDB connections: a database file and a table (or a query).

Details: ``{"path": "data.duckdb", "table": "houses"}`` or ``{"path": ..., "query": "SELECT ..."}``;
optionally ``threads`` (DuckDB's worker threads, default 1: the model uses the cores).
Writes happen in one transaction that commits at the end, so a failed or killed run leaves
the table as it was. DuckDB lets one process open a file once, so sources and sinks on the
same file share one database handle (a cursor each).
"""

import os
import re

from ..errors import BadInput, ConfigError, MissingDependency
from . import Sink, Source

_databases = {}  # absolute path -> duckdb connection, shared within this process
INSERT_ROWS = 65_536  # rows gathered before one INSERT (see DuckDBSink.write)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _duckdb():
    try:
        import duckdb
    except ImportError:
        raise MissingDependency.from_args("a DUCKDB connection", ["duckdb"]) from None
    return duckdb


def _database(connection, must_exist):
    path = connection.details.get("path")
    if not path:
        raise ConfigError(f"DUCKDB connection {connection.name!r} has no 'path' in its details")
    path = os.path.abspath(os.path.expanduser(path))
    if path not in _databases:
        if must_exist and not os.path.exists(path):
            raise ConfigError(f"DuckDB file {path} of connection {connection.name!r} does not exist")
        duckdb = _duckdb()
        try:
            _databases[path] = duckdb.connect(path, config={"threads": _threads(connection)})
        except duckdb.Error as err:
            raise ConfigError(f"cannot open DuckDB file {path} of connection {connection.name!r}: {err}") from None
    return _databases[path]


def _threads(connection):
    """DuckDB's worker threads: 1 unless the details say ``threads``.

    In the read -> infer -> write loop the model already keeps every core busy; DuckDB's own
    thread pool on top of it made the loop slower (measured: 2.9 s -> 2.5 s for 1M rows).
    """
    value = connection.details.get("threads", 1)
    try:
        value = int(value)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise ConfigError(f"DUCKDB connection {connection.name!r}: 'threads' must be a positive integer, not {connection.details.get('threads')!r}")
    return value


def _quoted(table):
    if not _IDENTIFIER.match(table or ""):
        raise ConfigError(f"table name {table!r} is not a plain identifier (letters, digits, _; optional schema.)")
    return ".".join(f'"{part}"' for part in table.split("."))


def _table_of(connection, options):
    table = options.get("table") or connection.details.get("table")
    if not table:
        raise ConfigError(f"DUCKDB connection {connection.name!r} names no 'table' in its details")
    return table


def open_source(connection, query=None, table=None):
    return DuckDBSource(connection, query=query, table=table)


def open_sink(connection, mode="append", table=None, create=True):
    return DuckDBSink(connection, mode=mode, table=table, create=create)


class DuckDBSource(Source):
    def __init__(self, connection, query=None, table=None):
        self.connection = connection
        self._cursor = _database(connection, must_exist=True).cursor()
        query = query or (None if table else connection.details.get("query"))
        self.query = query or f"SELECT * FROM {_quoted(_table_of(connection, {'table': table}))}"

    def batches(self, batch_size):
        duckdb = _duckdb()
        try:
            relation = self._cursor.sql(self.query)
            # A relation streams Arrow without an extra copy; duckdb 2.x calls the reader
            # to_arrow_reader, 1.x fetch_arrow_reader.
            fetch = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
            reader = fetch(batch_size)
        except duckdb.CatalogException as err:
            raise ConfigError(f"connection {self.connection.name!r}: {_first_line(err)}") from None
        except duckdb.Error as err:
            raise BadInput(f"cannot read connection {self.connection.name!r}: {_first_line(err)}") from None
        for batch in reader:
            if batch.num_rows:
                yield batch

    def close(self):
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


class DuckDBSink(Sink):
    """Writes every batch inside one transaction; ``commit`` makes them visible together.

    The database is opened at the first write, so a run that fails before writing does not
    even create the file.
    """

    def __init__(self, connection, mode="append", table=None, create=True):
        self.connection = connection
        self.mode = mode
        self.create = create
        self.table = _quoted(_table_of(connection, {"table": table}))
        self.rows_written = 0
        self._cursor = None
        self._ended = False
        self._exists = self._filled = False
        self._pending, self._pending_rows = [], 0  # batches not inserted yet
        if not create:
            self._begin()  # the table must exist already: say so before any work is done

    def _begin(self):
        self._cursor = _database(self.connection, must_exist=not self.create).cursor()
        self._cursor.execute("BEGIN TRANSACTION")
        name = self.table.replace('"', "").split(".")[-1]
        found = self._cursor.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchall()[0][0]  # fetchall: a half-read result blocks the cursor
        self._exists = found > 0
        if not self._exists and not self.create:
            self._fail(ConfigError(
                f"table {self.table} of connection {self.connection.name!r} does not exist; "
                f"create it or open the sink with create=True"
            ))

    def _fail(self, error):
        self.abort()
        raise error

    def write(self, batch):
        if self._ended:
            raise ConfigError("this sink has already been committed or aborted")
        # Each INSERT has a fixed cost in DuckDB (planning, an Arrow scan set up under the
        # GIL): gather small batches into chunks of at least INSERT_ROWS rows.
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= INSERT_ROWS:
            self._flush()

    def _flush(self):
        if not self._pending:
            return
        if self._cursor is None:
            self._begin()
        duckdb = _duckdb()
        import pyarrow as pa

        chunk = pa.Table.from_batches(self._pending)
        self._pending, self._pending_rows = [], 0
        self._cursor.register("__orchzip_batch", chunk)
        try:
            if not self._filled and (self.mode == "overwrite" or not self._exists):
                self._cursor.execute(f"CREATE OR REPLACE TABLE {self.table} AS SELECT * FROM __orchzip_batch")
            else:
                self._cursor.execute(f"INSERT INTO {self.table} BY NAME SELECT * FROM __orchzip_batch")
            self._filled = True
        except duckdb.Error as err:
            self._fail(BadInput(
                f"results do not fit table {self.table} of connection {self.connection.name!r} "
                f"(result columns: {', '.join(chunk.schema.names)}): {_first_line(err)}"
            ))
        finally:
            if self._cursor is not None:
                self._cursor.unregister("__orchzip_batch")
        self.rows_written += chunk.num_rows

    def commit(self):
        if self._ended:
            return
        self._flush()
        path = os.path.abspath(os.path.expanduser(self.connection.details.get("path", "")))
        if self._cursor is None and self.mode == "overwrite" and os.path.exists(path):
            self._begin()  # no rows this run, but overwrite still empties the table
        if self._cursor is not None:
            if not self._filled and self.mode == "overwrite" and self._exists:
                self._cursor.execute(f"DELETE FROM {self.table}")
            self._cursor.execute("COMMIT")
        self._end()

    def abort(self):
        if self._ended:
            return
        self._pending = []
        try:
            if self._cursor is not None:
                self._cursor.execute("ROLLBACK")
        finally:
            self._end()

    def _end(self):
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        self._ended = True


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
