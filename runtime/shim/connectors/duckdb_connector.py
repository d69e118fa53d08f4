"""DUCKDB connections: a database file and a table (or a query).

Details: ``{"path": "data.duckdb", "table": "houses"}`` or ``{"path": ..., "query": "SELECT ..."}``;
optionally ``threads`` (DuckDB's worker threads, default 1: the model uses the cores) and
``memory_limit`` (default 64MB: DuckDB would otherwise cache the whole table it streams;
it spills to disk past the limit).
Writes go to a staging table that replaces or joins the table in one transaction at the
end, so a failed or killed run leaves the table as it was (see DuckDBSink). DuckDB lets one
process open a file once, so sources and sinks on the same file share one database handle
(a cursor each).

The ledger (exactly once): the table ``__orchzip_ledger`` in the same database holds one row
per committed idempotency key and target table (``key, target, run_id, rows, mode,
committed_at``), inserted in the SAME transaction that swaps the rows in. A commit whose key
is already there writes nothing and reports the run that did. Query it to see which run wrote
which rows; rows older than details ``ledger_retention_days`` (default 30) are deleted at
each commit.
"""

import os
import re
import threading
import uuid

from ..errors import BadInput, ConfigError, MissingDependency
from . import Sink, Source

_databases = {}  # absolute path -> duckdb connection, shared within this process
INSERT_ROWS = 65_536  # rows gathered before one INSERT (see DuckDBSink.write)
# DuckDB caches what it reads up to most of the machine's memory; a stream needs no cache.
MEMORY_LIMIT = "64MB"
LEDGER_TABLE = "__orchzip_ledger"
LEDGER_RETENTION_DAYS = 30
STAGING_MARK = "__orchzip_staging_"  # <table><mark><pid>_<random>: a sink's rows until commit
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
            config = {"threads": _threads(connection), "memory_limit": str(connection.details.get("memory_limit", MEMORY_LIMIT))}
            _databases[path] = duckdb.connect(path, config=config)
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


def committed_by(target, key):
    """The run that committed ``key`` into ``target``'s table, or None (read-only look-up)."""
    duckdb = _duckdb()
    if not os.path.exists(target["path"]):
        return None
    with duckdb.connect(target["path"], read_only=True) as db:
        found = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name = ?", [LEDGER_TABLE]
        ).fetchall()
        if not found:
            return None
        row = db.execute(f"SELECT run_id FROM {LEDGER_TABLE} WHERE target = ? AND key = ?",
                         [target["table"], key]).fetchone()
    return (row[0] or "an earlier run") if row else None


def _retention(connection):
    value = connection.details.get("ledger_retention_days", LEDGER_RETENTION_DAYS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"DUCKDB connection {connection.name!r}: 'ledger_retention_days' must be 0 or more days, not {value!r}")
    return value


class DuckDBSource(Source):
    """Rows of a table (the details' or ``table``) or of a query, as Arrow record batches.

    A table is read a row-id range at a time, each range in a short transaction of its own,
    so no read transaction stays open while the sink commits its chunks into the same file:
    under one long scan DuckDB cannot checkpoint those commits, and every chunk written cost
    more than the one before (10M house rows took 56 core-seconds instead of ~38). Rows added
    to the table while it is read are not read (the last row id is fixed when reading starts).
    A query (or a view) streams from one read transaction.
    """

    def __init__(self, connection, query=None, table=None):
        self.connection = connection
        self._cursor = _database(connection, must_exist=True).cursor()
        query = query or (None if table else connection.details.get("query"))
        self.table = None if query else _quoted(_table_of(connection, {"table": table}))
        self.query = query or f"SELECT * FROM {self.table}"

    def batches(self, batch_size):
        duckdb = _duckdb()
        try:
            bounds = self._row_ids() if self.table else None
            if bounds is None:
                relation = self._cursor.sql(self.query)
                # A relation streams Arrow without an extra copy; duckdb 2.x calls the reader
                # to_arrow_reader, 1.x fetch_arrow_reader.
                fetch = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
                reader = fetch(batch_size)
        except duckdb.CatalogException as err:
            raise ConfigError(f"connection {self.connection.name!r}: {_first_line(err)}") from None
        except duckdb.Error as err:
            raise BadInput(f"cannot read connection {self.connection.name!r}: {_first_line(err)}") from None
        if bounds is not None:
            yield from self._ranges(bounds, batch_size)
            return
        for batch in reader:
            if batch.num_rows:
                yield batch

    def _row_ids(self):
        """``(first, last)`` row id of the table, ``()`` when it is empty, None for a view."""
        duckdb = _duckdb()
        try:
            first, last = self._cursor.execute(f"SELECT min(rowid), max(rowid) FROM {self.table}").fetchone()
        except duckdb.BinderException:
            return None  # a view has no row ids
        return () if first is None else (first, last)

    def _ranges(self, bounds, batch_size):
        if not bounds:
            return
        duckdb = _duckdb()
        start, last = bounds
        while start <= last:
            stop = min(start + batch_size, last + 1)
            try:
                result = self._cursor.execute(
                    f"SELECT * FROM {self.table} WHERE rowid >= {int(start)} AND rowid < {int(stop)}")
                # duckdb 1.5 renamed fetch_arrow_table to_arrow_table (and deprecated the old name).
                rows = (getattr(result, "to_arrow_table", None) or result.fetch_arrow_table)()
            except duckdb.Error as err:
                raise BadInput(f"cannot read connection {self.connection.name!r}: {_first_line(err)}") from None
            start = stop
            if rows.num_rows:
                yield rows.combine_chunks().to_batches()[0]

    def close(self):
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


class DuckDBSink(Sink):
    """Writes into a staging table; ``commit`` makes every row visible at once.

    Each chunk of rows goes into the staging table in a transaction of its own, so DuckDB
    holds no more than a chunk in memory however many rows a run writes (one transaction
    for all rows kept them all in memory). ``commit`` then, in one transaction, renames the
    staging table into place (overwrite, or a new table) or appends it to the table; ``abort``
    drops it. A staging table left by a killed process is dropped by the next sink on that
    table. The database is opened at the first write, so a run that fails before writing
    does not even create the file.
    """

    def __init__(self, connection, mode="append", table=None, create=True):
        self.connection = connection
        self.mode = mode
        self.create = create
        self.table = _quoted(_table_of(connection, {"table": table}))
        self.retention_days = _retention(connection)
        self.rows_written = 0
        self._cursor = None
        self._ended = False
        self._exists = False
        self._staging = None  # quoted name, once the first chunk is in
        self._pending, self._pending_rows = [], 0  # batches not inserted yet
        if not create:
            self._begin()  # the table must exist already: say so before any work is done

    def _begin(self):
        self._cursor = _database(self.connection, must_exist=not self.create).cursor()
        schema, name = _split(self.table)
        tables = {r[0] for r in self._cursor.execute(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = {_literal(schema or 'main')}"
        ).fetchall()}  # fetchall: a half-read result blocks the cursor
        self._exists = name in tables
        if not self._exists and not self.create:
            self._fail(ConfigError(
                f"table {self.table} of connection {self.connection.name!r} does not exist; "
                f"create it or open the sink with create=True"
            ))
        self._drop_leftover_staging(schema, name, tables)
        staging = f"{name}{STAGING_MARK}{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._staging_name = staging
        self._staging_quoted = f'"{schema}"."{staging}"' if schema else f'"{staging}"'

    def _drop_leftover_staging(self, schema, name, tables):
        prefix = f"{name}{STAGING_MARK}"
        for table in tables:
            if table.startswith(prefix) and not _alive(table[len(prefix):].split("_")[0]):
                quoted = f'"{schema}"."{table}"' if schema else f'"{table}"'
                self._cursor.execute(f"DROP TABLE IF EXISTS {quoted}")

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
        try:
            if self._staging is None:
                if self._exists and self.mode == "append":
                    self._check_fits_table(chunk)
                _scan(self._cursor, f"CREATE TABLE {self._staging_quoted} AS SELECT * FROM {_SCAN_NAME}", chunk)
                self._staging = self._staging_quoted
            else:
                _scan(self._cursor, f"INSERT INTO {self._staging} SELECT * FROM {_SCAN_NAME}", chunk)
        except duckdb.Error as err:
            self._fail(BadInput(
                f"results do not fit table {self.table} of connection {self.connection.name!r} "
                f"(result columns: {', '.join(chunk.schema.names)}): {_first_line(err)}"
            ))
        self.rows_written += chunk.num_rows

    def _check_fits_table(self, chunk):
        # Appending goes by column name; try it on no rows so a mismatch fails now, not at commit.
        self._cursor.execute("BEGIN TRANSACTION")
        try:
            _scan(self._cursor, f"INSERT INTO {self.table} BY NAME SELECT * FROM {_SCAN_NAME} LIMIT 0", chunk)
        finally:
            self._cursor.execute("ROLLBACK")

    def commit(self):
        if self._ended:
            return
        self._flush()
        path = os.path.abspath(os.path.expanduser(self.connection.details.get("path", "")))
        if self._cursor is None and self.mode == "overwrite" and os.path.exists(path):
            self._begin()  # no rows this run, but overwrite still empties the table
        if self._cursor is None and self.ledger_key and os.path.exists(path):
            self._begin()  # no rows: the ledger still says whether this key committed
        if self._cursor is not None:
            # DuckDB lets one process open a file, so this lock serializes every commit into
            # it: concurrent retries of one key see each other's ledger rows, one writes.
            with _commit_lock(path):
                self._commit_with_ledger()
        self._end()

    def _commit_with_ledger(self):
        duckdb = _duckdb()
        if self.ledger_key:
            self._create_ledger()
        self._cursor.execute("BEGIN TRANSACTION")
        try:
            earlier = self._ledger_entry()
            if earlier is None:
                self._swap_in()
                if self.ledger_key:
                    values = ", ".join(_literal(v) for v in (
                        self.ledger_key, self._target_name, self.ledger_run, self.rows_written, self.mode))
                    self._cursor.execute(f"INSERT INTO {LEDGER_TABLE} VALUES ({values}, now())")
                    self._cursor.execute(
                        f"DELETE FROM {LEDGER_TABLE} WHERE committed_at < now() - "
                        f"to_days(CAST({_literal(int(self.retention_days))} AS INTEGER))"
                    )
            self._cursor.execute("COMMIT")  # the commit point: rows and ledger row together
        except duckdb.TransactionException:
            # Another sink of this process committed the same key first: that one wins.
            self._cursor.execute("ROLLBACK")
            earlier = self._ledger_entry()
            if earlier is None:
                self._fail_quietly()
                raise
        except BaseException:
            self._cursor.execute("ROLLBACK")
            self._fail_quietly()
            raise
        if earlier is not None:
            self.already_committed_by = earlier
            self.abort()  # drop the staged rows: they are already in the table
            return
        self._staging = None

    def _create_ledger(self):
        self._cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (key VARCHAR NOT NULL, target VARCHAR NOT NULL, "
            f"run_id VARCHAR, rows BIGINT, mode VARCHAR, committed_at TIMESTAMPTZ, PRIMARY KEY (target, key))"
        )

    def _ledger_entry(self):
        if not self.ledger_key:
            return None
        row = self._cursor.execute(f"SELECT run_id FROM {LEDGER_TABLE} WHERE target = "
                                   f"{_literal(self._target_name)} AND key = {_literal(self.ledger_key)}").fetchone()
        return (row[0] or "an earlier run") if row else None

    def target(self):
        path = os.path.abspath(os.path.expanduser(self.connection.details.get("path", "")))
        return {"type": "DUCKDB", "path": path, "table": self._target_name}

    @property
    def _target_name(self):
        return self.table.replace('"', "")  # as users write it in a query: schema.table

    def _swap_in(self):
        if self._staging is None:
            if self.mode == "overwrite" and self._exists:
                self._cursor.execute(f"DELETE FROM {self.table}")
        elif self._exists and self.mode == "append":
            self._cursor.execute(f"INSERT INTO {self.table} BY NAME SELECT * FROM {self._staging}")
            self._cursor.execute(f"DROP TABLE {self._staging}")
        else:
            if self._exists:
                self._cursor.execute(f"DROP TABLE {self.table}")
            self._cursor.execute(f'ALTER TABLE {self._staging} RENAME TO "{_split(self.table)[1]}"')

    def _fail_quietly(self):
        try:
            self.abort()
        except Exception:  # the original error is the one to report
            pass

    def abort(self):
        if self._ended:
            return
        self._pending = []
        try:
            if self._cursor is not None and self._staging is not None:
                self._cursor.execute(f"DROP TABLE IF EXISTS {self._staging}")
        finally:
            self._end()

    def _end(self):
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        self._ended = True


_commit_locks = {}
_commit_locks_guard = threading.Lock()


_SCAN_NAME = "__orchzip_batch"


class _ArrowStream:
    """A table seen only through the Arrow C stream interface (``__arrow_c_stream__``).

    DuckDB scans a registered pyarrow Table through ``pyarrow.dataset``, whose import pulls in
    pandas (0.3-0.45 s of every run with the pyarrow releases Wallaroo pins); an object that
    only offers the C stream is read directly, as fast (measured: 1.1 core-seconds a million
    house rows either way). DuckDB may consume the stream at registration, so each statement
    gets a fresh registration (see :func:`_scan`).
    """

    def __init__(self, table):
        self._table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)


def _streams_supported(duckdb):
    """DuckDB reads ``__arrow_c_stream__`` objects from 1.1 on (older ones need the Table)."""
    try:
        major, minor = (int(part) for part in duckdb.__version__.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (1, 1)


def _scan(cursor, sql, table):
    """Run ``sql``, in which ``_SCAN_NAME`` names the rows of the Arrow ``table``."""
    duckdb = _duckdb()
    rows = table
    if _streams_supported(duckdb) and hasattr(table, "__arrow_c_stream__"):
        rows = _ArrowStream(table)
    cursor.register(_SCAN_NAME, rows)
    try:
        cursor.execute(sql)
    finally:
        cursor.unregister(_SCAN_NAME)


def _commit_lock(path):
    with _commit_locks_guard:
        return _commit_locks.setdefault(path, threading.Lock())


def _literal(value):
    """``value`` (a string, an int or None) as a DuckDB SQL literal.

    The task's statements spell their values out instead of binding parameters: DuckDB's
    parameter binding imports pandas (0.25 s) to check the values' types.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"no SQL literal for {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _split(quoted_table):
    """``(schema or None, name)`` of a quoted table name."""
    parts = quoted_table.replace('"', "").split(".")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _alive(pid_text):
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
