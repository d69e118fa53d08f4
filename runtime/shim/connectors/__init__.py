"""Connectors: read a connection as Arrow record batches, write batches all-or-nothing.

Each connection type has its own module, imported only when a connection of that type is
used, so that a zip pulls in duckdb or google-cloud-bigquery only if it needs them.

A *source* is any object with ``batches(batch_size) -> Iterator[pyarrow.RecordBatch]`` and
``close()``. A *sink* subclasses :class:`Sink`: ``write(batch)`` any number of times, then
``commit()`` makes everything visible at once, or ``abort()`` leaves the target as it was.
Used as a context manager, a sink commits when the block succeeds and aborts otherwise, and
leaves the durable trail of ``commits`` (opened, prepared, committed) the runner settles a
run's status from.

Exactly once: a sink carries the run's idempotency key (``ledger_key``, by default the one
the runner gives the task; ``open_sink(..., idempotency_key=...)`` sets another). A sink that
supports it records the key in a ledger in the same transaction as the data, and a commit of
a key the ledger already holds writes nothing and sets ``already_committed_by`` to the run
that committed it. ``target()`` describes what the sink writes (no secrets) so that the
runner can ask the connector module's ``committed_by(target, key)`` after a kill.
"""

import importlib
import logging

from .. import commits
from ..errors import ConfigError

__all__ = ["Source", "Sink", "open_source", "open_sink", "register", "rename_columns"]

# Connection type -> module (relative to this package) with ``open_source``/``open_sink``.
_MODULES = {
    "DUCKDB": "duckdb_connector",
    "FILE": "file_connector",
    "BIGQUERY": "bigquery_connector",
    "HTTP": "http_connector",
}

WRITE_MODES = ("append", "overwrite")


def register(connection_type, module_name):
    """Add a connection type; ``module_name`` is an absolute or relative module path."""
    _MODULES[connection_type.upper()] = module_name


def _module_for(connection):
    name = _MODULES.get(connection.type)
    if name is None:
        known = ", ".join(sorted(_MODULES))
        raise ConfigError(
            f"connection {connection.name!r} has type {connection.type!r}, which orchzip "
            f"cannot read or write; use one of: {known}"
        )
    if name.startswith(".") or "." not in name:
        return importlib.import_module("." + name.lstrip("."), __name__)
    return importlib.import_module(name)


def open_source(connection, **options):
    """A source over ``connection`` (options depend on the type, e.g. ``query=``)."""
    return _module_for(connection).open_source(connection, **options)


def open_sink(connection, mode="append", rename=None, **options):
    """A sink into ``connection``.

    :param mode: ``append`` adds rows; ``overwrite`` replaces the target's rows at commit.
    :param rename: a dict ``{old: new}`` or a callable ``old -> new`` applied to column
        names before writing, e.g. ``lambda c: c.replace(".", "_")`` turns Wallaroo's
        ``in.tensor`` into ``in_tensor`` as the tutorial's output table needs.
    :param idempotency_key: what names this output across retries (default: the run's key).
    """
    if mode not in WRITE_MODES:
        raise ConfigError(f"write mode {mode!r} is not one of: {', '.join(WRITE_MODES)}")
    key = commits.idempotency_key(options.pop("idempotency_key", None))
    sink = _module_for(connection).open_sink(connection, mode=mode, **options)
    sink.ledger_key = key
    sink.ledger_run = commits.current_run_id()
    sink = _RenamingSink(sink, rename) if rename else sink
    sink.sink_id = commits.sink_id()
    commits.record("opened", sink.sink_id, target=sink.target(), key=key, connection=connection.name)
    return sink


class Source:
    """Optional base for sources: a context manager that closes itself."""

    def batches(self, batch_size):  # pragma: no cover - interface
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Sink:
    """Base of all sinks: ``write`` batches, then ``commit`` or ``abort`` exactly once."""

    rows_written = 0
    ledger_key = None  # the idempotency key recorded with the data at commit
    ledger_run = None  # the run id recorded beside it
    already_committed_by = None  # set by a commit that found its key in the ledger
    sink_id = None  # set by open_sink: names this sink in the commit records

    def target(self):
        """What this sink writes, for ``committed_by`` after a kill (no secrets); None: unknown."""
        return None

    def write(self, batch):  # pragma: no cover - interface
        raise NotImplementedError

    def commit(self):  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self):  # pragma: no cover - interface
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            commit_recorded(self)
        else:
            self.abort()
            if self.sink_id:
                commits.record("aborted", self.sink_id)
        return False


def commit_recorded(sink):
    """``sink.commit()`` between its ``prepared`` and ``committed`` records, signals deferred."""
    if not sink.sink_id:
        sink.commit()
        return
    with commits.shielded():
        commits.record("prepared", sink.sink_id, key=sink.ledger_key)
        commits.fault_point("prepared")
        try:
            sink.commit()
        except BaseException as err:
            commits.record("failed", sink.sink_id, error=type(err).__name__)
            raise
        commits.fault_point("committed")
        commits.record("committed", sink.sink_id, rows=sink.rows_written, key=sink.ledger_key,
                       already=sink.already_committed_by)
        commits.fault_point("recorded")
    if sink.already_committed_by:
        # To the run's log (logging's last-resort handler writes warnings to stderr).
        logging.getLogger("orchzip_shim").warning(
            "orchzip: %s: idempotency key %r already committed by run %s; nothing written again",
            commits_target(sink), sink.ledger_key, sink.already_committed_by)


def commits_target(sink):
    target = sink.target() or {}
    where = target.get("path") or target.get("table_id") or "the sink"
    return f"{where} table {target['table']}" if target.get("table") else where


def rename_columns(batch, rename):
    """``batch`` with its columns renamed by a dict or a callable."""
    if callable(rename):
        names = [rename(n) for n in batch.schema.names]
    else:
        names = [rename.get(n, n) for n in batch.schema.names]
    # Not batch.rename_columns: RecordBatch has it only from pyarrow 16, and the task image of
    # wallaroo 2026.1.3 pins pyarrow 14.0.1 (2024.1.0: 12.0.1).
    import pyarrow as pa
    schema = pa.schema([field.with_name(name) for field, name in zip(batch.schema, names)],
                       metadata=batch.schema.metadata)
    return pa.RecordBatch.from_arrays(batch.columns, schema=schema)


class _RenamingSink(Sink):
    def __init__(self, inner, rename):
        self._inner = inner
        self._rename = rename

    @property
    def rows_written(self):
        return self._inner.rows_written

    @property
    def ledger_key(self):
        return self._inner.ledger_key

    @property
    def already_committed_by(self):
        return self._inner.already_committed_by

    def target(self):
        return self._inner.target()

    def write(self, batch):
        self._inner.write(rename_columns(batch, self._rename))

    def commit(self):
        self._inner.commit()

    def abort(self):
        self._inner.abort()
