"""FILE connections: Parquet, Arrow IPC, CSV or pandas-records JSON files.

Details: ``{"path": "inputs.parquet", "format": "parquet"}``; the format defaults to the
file's suffix (.parquet, .arrow/.feather/.ipc, .csv, .json for a JSON array of records as
``DataFrame.to_json(orient="records")`` writes it, .jsonl/.ndjson for one record per line).

Writes go to a temporary file beside the target that replaces it atomically at commit, so a
failed or killed run leaves the old file untouched. Appending copies the old rows into the
temporary file first.
"""

import io
import json
import os
import tempfile

import pyarrow as pa

from ..errors import BadInput, ConfigError
from . import Sink, Source

FORMATS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
}


def _path_and_format(connection):
    path = connection.details.get("path")
    if not path:
        raise ConfigError(f"FILE connection {connection.name!r} has no 'path' in its details")
    path = os.path.abspath(os.path.expanduser(path))
    fmt = connection.details.get("format") or FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt not in set(FORMATS.values()):
        raise ConfigError(
            f"FILE connection {connection.name!r}: cannot tell the format of {path}; set "
            f"details 'format' to one of: {', '.join(sorted(set(FORMATS.values())))}"
        )
    return path, fmt


def open_source(connection, **_options):
    path, fmt = _path_and_format(connection)
    if not os.path.isfile(path):
        raise ConfigError(f"input file {path} of connection {connection.name!r} does not exist")
    return FileSource(connection.name, path, fmt)


def open_sink(connection, mode="append", **_options):
    path, fmt = _path_and_format(connection)
    return FileSink(connection.name, path, fmt, mode)


def _rebatch(batches, batch_size):
    """Batches of exactly ``batch_size`` rows (the last may be shorter)."""
    pending, count = [], 0
    for batch in batches:
        while batch.num_rows:
            take = min(batch_size - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == batch_size:
                yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def read_batches(path, fmt, batch_size):
    """Stream ``path`` as record batches of ``batch_size`` rows (JSON arrays load whole)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size)
    elif fmt == "arrow":
        yield from _rebatch(_arrow_batches(path), batch_size)
    elif fmt == "csv":
        import pyarrow.csv as pacsv
        options = pacsv.ReadOptions(block_size=1 << 22)
        yield from _rebatch((_parse_list_columns(b) for b in pacsv.open_csv(path, read_options=options)), batch_size)
    elif fmt == "jsonl":
        import pyarrow.json as pajson
        yield from pajson.read_json(path).to_batches(batch_size)
    else:
        # A JSON array cannot be parsed a piece at a time with the stdlib: it loads whole.
        # Use .jsonl or Parquet for inputs that do not fit in memory.
        with open(path, encoding="utf-8") as fh:
            records = json.load(fh)
        if not isinstance(records, list):
            raise BadInput(f"{path} is not a JSON array of records (as DataFrame.to_json(orient='records') writes)")
        yield from pa.Table.from_pylist(records).to_batches(batch_size)


def _arrow_batches(path):
    source = pa.memory_map(path)
    try:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
    except pa.ArrowInvalid:
        source.seek(0)
        yield from pa.ipc.open_stream(source)


def _parse_list_columns(batch):
    """CSV cells like ``[1.0, 2.0]`` (how FileSink writes lists) back into list columns."""
    columns = []
    for column in batch.columns:
        if pa.types.is_string(column.type) and len(column) and str(column[0].as_py() or "").startswith("["):
            column = pa.array([json.loads(v) if v is not None else None for v in column.to_pylist()])
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


class FileSource(Source):
    def __init__(self, name, path, fmt):
        self.name, self.path, self.format = name, path, fmt

    def batches(self, batch_size):
        try:
            for batch in read_batches(self.path, self.format, batch_size):
                if batch.num_rows:
                    yield batch
        except (pa.ArrowInvalid, ValueError, OSError) as err:
            raise BadInput(f"cannot read {self.path} of connection {self.name!r} as {self.format}: {str(err).splitlines()[0]}") from None


class FileSink(Sink):
    def __init__(self, name, path, fmt, mode):
        self.name, self.path, self.format, self.mode = name, path, fmt, mode
        self.rows_written = 0
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, self._tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        self._fh = os.fdopen(fd, "wb")
        self._writer = None
        self._json_rows = 0
        if mode == "append" and os.path.exists(path):
            for batch in read_batches(path, fmt, 65_536):
                self._write(batch)

    def write(self, batch):
        try:
            self._write(batch)
        except (pa.ArrowInvalid, ValueError) as err:
            self.abort()
            raise BadInput(f"results do not fit {self.path} of connection {self.name!r}: {str(err).splitlines()[0]}") from None
        self.rows_written += batch.num_rows

    def _write(self, batch):
        if self.format == "parquet":
            import pyarrow.parquet as pq
            if self._writer is None:
                self._writer = pq.ParquetWriter(self._fh, batch.schema)
            self._writer.write_batch(batch)
        elif self.format == "arrow":
            if self._writer is None:
                self._writer = pa.ipc.new_file(self._fh, batch.schema)
            self._writer.write_batch(batch)
        elif self.format == "csv":
            import pyarrow.csv as pacsv
            batch = _lists_as_json_text(batch)
            if self._writer is None:
                self._writer = pacsv.CSVWriter(self._fh, batch.schema)
            self._writer.write_batch(batch)
        else:
            self._write_json(batch)

    def _write_json(self, batch):
        lines = self.format == "jsonl"
        text = io.StringIO()
        for row in _json_rows(batch):
            if not lines:
                text.write("," if self._json_rows else "[")
            text.write(json.dumps(row))
            if lines:
                text.write("\n")
            self._json_rows += 1
        self._fh.write(text.getvalue().encode("utf-8"))

    def commit(self):
        if self._fh is None:
            return
        if self._writer is not None:
            self._writer.close()
        if self.format == "json":
            self._fh.write(b"]" if self._json_rows else b"[]")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        os.replace(self._tmp_path, self.path)

    def abort(self):
        if self._fh is None:
            return
        if self._writer is not None:
            try:
                self._writer.close()  # or its finaliser writes into the closed file later
            except Exception:
                pass
            self._writer = None
        self._fh.close()
        self._fh = None
        try:
            os.unlink(self._tmp_path)
        except FileNotFoundError:
            pass


def _json_rows(batch):
    """Rows as JSON-ready dicts; timestamps as epoch milliseconds, as Wallaroo answers."""
    columns = {}
    for name, column in zip(batch.schema.names, batch.columns):
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("ms")).cast(pa.int64())
        columns[name] = column.to_pylist()
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]


def _lists_as_json_text(batch):
    columns = []
    for column in batch.columns:
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type):
            column = pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()], pa.string())
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
