"""Connectors: read a connection as Arrow record batches, write batches all-or-nothing.

Each connection type has its own module, imported only when a connection of that type is
used, so that a zip pulls in duckdb or google-cloud-bigquery only if it needs them.

A *source* is any object with ``batches(batch_size) -> Iterator[pyarrow.RecordBatch]`` and
``close()``. A *sink* subclasses :class:`Sink`: ``write(batch)`` any number of times, then
``commit()`` makes everything visible at once, or ``abort()`` leaves the target as it was.
Used as a context manager, a sink commits when the block succeeds and aborts otherwise.
"""

import importlib

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
    """
    if mode not in WRITE_MODES:
        raise ConfigError(f"write mode {mode!r} is not one of: {', '.join(WRITE_MODES)}")
    sink = _module_for(connection).open_sink(connection, mode=mode, **options)
    return _RenamingSink(sink, rename) if rename else sink


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
            self.commit()
        else:
            self.abort()
        return False


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

    def write(self, batch):
        self._inner.write(rename_columns(batch, self._rename))

    def commit(self):
        self._inner.commit()

    def abort(self):
        self._inner.abort()
