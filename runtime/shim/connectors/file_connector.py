"""FILE connections: Parquet, Arrow IPC, CSV or pandas-records JSON files.

Details: ``{"path": "inputs.parquet", "format": "parquet"}``; the format defaults to the
file's suffix (.parquet, .arrow/.feather/.ipc, .csv, .json for a JSON array of records as
``DataFrame.to_json(orient="records")`` writes it, .jsonl/.ndjson for one record per line).

Writes go to a temporary file beside the target, ``.NAME.<pid>.<random>.tmp``, that replaces
it atomically at commit, so a failed or killed run leaves the old file untouched. Appending
copies the old rows into the temporary file first. A sink removes its temporary file when it
aborts; one left by a killed process (its pid no longer runs) is removed by the next sink on
the same file, and by the runner when the run ends. A committed file keeps the mode the old
file had (a new one gets the usual mode for the umask).

The ledger (exactly once): ``.NAME.orchzip-ledger.json`` beside the output lists the
idempotency keys whose rows the file holds, with the run that wrote each, and a fingerprint
(inode, size, mtime) of the output it describes. A commit, under an exclusive lock on
``.NAME.orchzip-lock``:

1. fsyncs the temporary output and checks the ledger: a key already there makes the commit a
   no-op (``already_committed_by``) and the temporary file is removed;
2. writes the new ledger (old entries + this key, the temporary output's fingerprint) to a
   temporary ledger file and fsyncs it;
3. renames the temporary output into place: THE COMMIT POINT;
4. renames the temporary ledger into place.

A kill between 3 and 4 leaves a temporary ledger whose fingerprint matches the output: the
next reader rolls it forward. A ledger whose fingerprint matches nothing describes a file
that changed outside orchzip and is ignored. Entries older than details
``ledger_retention_days`` (default 30) are dropped at each commit.
"""

import contextlib
import datetime
import io
import json
import os
import secrets

import pyarrow as pa

from ..commits import fault_point
from ..errors import BadInput, ConfigError
from . import Sink, Source

LEDGER_RETENTION_DAYS = 30

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
    retention = connection.details.get("ledger_retention_days", LEDGER_RETENTION_DAYS)
    if isinstance(retention, bool) or not isinstance(retention, (int, float)) or not retention >= 0:
        raise ConfigError(f"FILE connection {connection.name!r}: 'ledger_retention_days' must be 0 or more days, not {retention!r}")
    return FileSink(connection.name, path, fmt, mode, retention_days=retention)


def committed_by(target, key):
    """The run that committed ``key`` into the file ``target`` names, or None (see the ledger)."""
    entry = _Ledger(target["path"]).read().get(key)
    return entry["run_id"] or "an earlier run" if entry else None


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
    def __init__(self, name, path, fmt, mode, retention_days=LEDGER_RETENTION_DAYS):
        self.name, self.path, self.format, self.mode = name, path, fmt, mode
        self.retention_days = retention_days
        self.rows_written = 0
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        remove_leftovers(path)
        self._tmp_path = temp_path(path)
        fd = os.open(self._tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        self._fh = os.fdopen(fd, "wb")
        self._writer = None
        self._json_rows = 0
        self._read_fingerprint = _fingerprint(path)
        if mode == "append" and os.path.exists(path):
            try:
                for batch in read_batches(path, fmt, 65_536):
                    self._write(batch)
            except BaseException:
                self.abort()
                raise

    def target(self):
        return {"type": "FILE", "path": self.path}

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
        try:
            with _Ledger(self.path).locked() as ledger:
                self._swap_in(ledger)
        finally:
            _unlink(self._tmp_path)  # gone already unless the commit was refused or a no-op

    def _swap_in(self, ledger):
        entries = ledger.read()
        if self.ledger_key and self.ledger_key in entries:
            self.already_committed_by = entries[self.ledger_key]["run_id"] or "an earlier run"
            return
        if self.mode == "append" and _fingerprint(self.path) != self._read_fingerprint:
            raise BadInput(
                f"{self.path} of connection {self.name!r} was replaced by another writer while this "
                f"run appended to it; nothing was written, run again to append to the new file"
            )
        os.chmod(self._tmp_path, _mode_for(self.path))
        if self.ledger_key:
            entries[self.ledger_key] = {
                "run_id": self.ledger_run, "rows": self.rows_written, "mode": self.mode,
                "committed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
        ledger_tmp = ledger.prepare(_expire(entries, self.retention_days), _fingerprint(self._tmp_path))
        os.replace(self._tmp_path, self.path)  # the commit point
        fault_point("swapped")
        ledger.install(ledger_tmp)

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
        _unlink(self._tmp_path)


def temp_path(path):
    """A new temporary path beside ``path``, tagged with this process's pid."""
    directory, base = os.path.split(path)
    return os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_leftovers(path):
    """Remove temporary files beside ``path`` whose process no longer runs; returns them.

    A ledger left half-installed by a killed commit is rolled forward (or removed) first.
    """
    directory, base = os.path.split(path)
    if os.path.exists(os.path.join(directory, f".{base}.orchzip-lock")):
        with _Ledger(path).locked():
            pass
    prefix = f".{base}."
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")) or name.startswith(f"{prefix}orchzip-ledger."):
            continue  # temporary ledgers are the ledger's to roll forward or remove
        pid = name[len(prefix):-len(".tmp")].split(".")[-2:][0]
        if pid.isdigit() and not _alive(int(pid)):
            _unlink(os.path.join(directory, name))
            removed.append(os.path.join(directory, name))
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:  # a zombie is dead too
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fingerprint(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _mode_for(path):
    """The mode the committed file gets: the old file's, else the umask's usual one."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask():
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _expire(entries, retention_days):
    cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=retention_days)
    kept = {}
    for key, entry in entries.items():
        try:
            when = datetime.datetime.fromisoformat(entry["committed_at"])
        except (KeyError, TypeError, ValueError):
            continue
        if when >= cutoff:
            kept[key] = entry
    return kept


class _Ledger:
    """The sidecar ledger of one output file (module docstring)."""

    def __init__(self, path):
        self.path = path
        directory, base = os.path.split(path)
        self.directory = directory
        self.ledger_path = os.path.join(directory, f".{base}.orchzip-ledger.json")
        self.lock_path = os.path.join(directory, f".{base}.orchzip-lock")
        self._tmp_prefix = f".{base}.orchzip-ledger."

    @contextlib.contextmanager
    def locked(self):
        import fcntl
        fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.read(roll_forward=True)
            # Under the lock no commit is between its steps 2 and 4: any other temporary
            # ledger is what a failed or killed commit left.
            for name in os.listdir(self.directory or "."):
                if name.startswith(self._tmp_prefix) and name.endswith(".tmp"):
                    _unlink(os.path.join(self.directory, name))
            yield self
        finally:
            os.close(fd)

    def read(self, roll_forward=False):
        """``{key: entry}`` of the output as it is now (rolled forward if a commit was cut short)."""
        output = _fingerprint(self.path)
        current = _load(self.ledger_path)
        if current is not None and current.get("output") == output:
            return current["entries"]
        for name in sorted(os.listdir(self.directory or ".")):
            if name.startswith(self._tmp_prefix) and name.endswith(".tmp"):
                candidate = os.path.join(self.directory, name)
                data = _load(candidate)
                if data is not None and output is not None and data.get("output") == output:
                    if roll_forward:
                        os.replace(candidate, self.ledger_path)
                    return data["entries"]
        return {}  # no ledger, or one describing a file that changed outside orchzip

    def prepare(self, entries, output_fingerprint):
        """Write the next ledger to a temporary file (fsync'd); returns its path."""
        tmp = os.path.join(self.directory, f"{self._tmp_prefix}{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "output": output_fingerprint, "entries": entries}, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def install(self, tmp):
        os.replace(tmp, self.ledger_path)
        try:
            fd = os.open(self.directory or ".", os.O_RDONLY)
            try:
                os.fsync(fd)  # both renames durable
            finally:
                os.close(fd)
        except OSError:
            pass


def _load(path):
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("entries"), dict) else None


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
