"""Writing results into a BigQuery table all-or-nothing: Parquet staged locally, one load job.

``write`` converts each batch to the table's column types and appends it to a Parquet file in
a local temporary directory; nothing reaches BigQuery until ``commit``, which runs ONE load job
(``WRITE_APPEND``, or ``WRITE_TRUNCATE`` for mode ``overwrite``). BigQuery applies a load job
atomically: its rows all appear when the job succeeds, none when it fails. So a run that fails
or is killed before or during commit leaves the table as it was.

Retrying a run must not load twice. The load job gets a job id derived from the run's
idempotency key (the same for every retry of one fire; else ``ORCHZIP_RUN_ID``; on Wallaroo
the ``run_id`` task arg, else ``WALLAROO_TASK_ID`` plus a hash of the results, as the task id
is the same for every run of a scheduled task) and the target table: BigQuery's job history
is this sink's ledger. BigQuery
refuses a second job with an id it already knows (409 Already Exists), so a retried commit finds
the job of the first try instead of starting a new one: done, it loads nothing again; still
running, it is waited for; failed (which loaded nothing), the next id ``..._1``, ``..._2`` is
tried. A commit that finds its job already done sets ``already_committed_by`` (the run named
by the job's ``orchzip_run`` label). Without any run id (a plain script) the id is random, and a retry can duplicate rows.
"""

import hashlib
import os
import re
import tempfile
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import Sink
from .bigquery_common import (
    BigQueryFailed,
    BigQueryUnavailable,
    bigquery,
    google_errors,
    make_client,
    missing,
    page_retry,
    with_retries,
)
from ..errors import BadInput, ConfigError, OrchzipError

__all__ = ["BigQuerySink", "bigquery_schema_for", "arrow_schema_for"]

MAX_JOB_IDS = 20  # earlier tries' failed jobs skipped before giving up
_TRANSIENT_JOB_REASONS = {"rateLimitExceeded", "quotaExceeded", "backendError", "internalError", "badGateway"}

# BigQuery column type -> the Arrow type a load job reads it from (as google-cloud-bigquery's
# own load_table_from_dataframe writes them: DATETIME is a timestamp without a time zone).
_ARROW_FOR = {
    "DATETIME": pa.timestamp("us"),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "FLOAT64": pa.float64(), "FLOAT": pa.float64(),
    "INT64": pa.int64(), "INTEGER": pa.int64(),
    "STRING": pa.string(),
    "BOOL": pa.bool_(), "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "BYTES": pa.binary(),
}


def _bigquery_type(arrow_type):
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP" if arrow_type.tz else "DATETIME"
    if pa.types.is_floating(arrow_type):
        return "FLOAT64"
    if pa.types.is_integer(arrow_type):
        return "INT64"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "STRING"
    if pa.types.is_boolean(arrow_type):
        return "BOOL"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "BYTES"
    return None


def _is_list(arrow_type):
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type)


def bigquery_schema_for(arrow_schema, table_id):
    """SchemaFields for a new table holding batches of ``arrow_schema``.

    The tutorial's results give ``time DATETIME, in_tensor ARRAY<FLOAT64>, out_variable
    ARRAY<FLOAT64>, anomaly_count INT64`` (``check_failures INT64`` from 2023 releases).
    """
    fields = []
    for field in arrow_schema:
        repeated = _is_list(field.type)
        kind = _bigquery_type(field.type.value_type if repeated else field.type)
        if kind is None:
            raise BadInput(
                f"cannot create table {table_id}: result column {field.name!r} has type "
                f"{field.type}, which has no BigQuery column type here"
            )
        fields.append(bigquery().SchemaField(field.name, kind, mode="REPEATED" if repeated else "NULLABLE"))
    return fields


def arrow_schema_for(bq_schema, table_id):
    """The Arrow schema a Parquet file for a load into ``bq_schema`` has."""
    fields = []
    for field in bq_schema:
        arrow_type = _ARROW_FOR.get(field.field_type)
        if arrow_type is None:
            raise BadInput(
                f"table {table_id} has column {field.name!r} of type {field.field_type}, which "
                f"orchzip cannot write; write to a table of DATETIME, TIMESTAMP, FLOAT64, INT64, "
                f"STRING, BOOL, DATE, BYTES columns and arrays of them"
            )
        if field.mode == "REPEATED":
            arrow_type = pa.list_(arrow_type)
        fields.append(pa.field(field.name, arrow_type, nullable=field.mode != "REQUIRED"))
    return pa.schema(fields)


def _describe(field):
    return f"{field.field_type} REPEATED" if field.mode == "REPEATED" else field.field_type


class BigQuerySink(Sink):
    """Stages batches as Parquet, then ``commit`` loads them in one job (module docstring)."""

    def __init__(self, settings, mode="append", create=False, table=None, run_id=None, staging_dir=None):
        self.settings = settings
        self.mode = mode
        self.create = bool(create)
        self.table_id = settings.table_id(table)
        self.run_id = run_id
        self.staging_dir = staging_dir
        self.rows_written = 0
        self.job_id = None
        self._client = make_client(settings)
        self._table = self._existing_or_creatable()
        self._bq_schema = list(self._table.schema) if self._table is not None else None
        self._arrow_schema = None
        self._writer = None
        self._path = None
        self._hash = hashlib.sha256()
        self._closed = False

    def __repr__(self):
        return (
            f"BigQuerySink(connection={self.settings.name!r}, table={self.table_id!r}, "
            f"mode={self.mode!r}, rows={self.rows_written})"
        )

    def _existing_or_creatable(self):
        from google.api_core.exceptions import NotFound

        doing = f"opening {self.table_id} for writing"

        def get():
            try:
                return self._client.get_table(self.table_id, retry=None)
            except NotFound:
                return None

        table = with_retries(self.settings, doing, get)
        if table is None:
            error = missing(self._client, self.settings, self.table_id, doing, for_sink=True)
            if not self.create or error.missing == "dataset":
                self._close_client()
                raise error
        return table

    # -- write --------------------------------------------------------------------------

    def write(self, batch):
        """Convert ``batch`` to the table's types and stage it; BigQuery sees it at commit."""
        if self._closed:
            raise ConfigError(f"the sink into {self.table_id} was already committed or aborted")
        if self._writer is None:
            self._start(batch.schema)
        converted = self._convert(batch)
        self._writer.write_batch(converted)
        if self._needs_content_hash():
            _update_hash(self._hash, converted)
        self.rows_written += batch.num_rows

    def _start(self, result_schema):
        if self._bq_schema is None:
            self._bq_schema = bigquery_schema_for(result_schema, self.table_id)
        self._check_columns(result_schema)
        self._arrow_schema = arrow_schema_for(self._bq_schema, self.table_id)
        import pyarrow.parquet as pq

        fd, self._path = tempfile.mkstemp(prefix="orchzip-bq-", suffix=".parquet", dir=self.staging_dir)
        os.close(fd)
        # Compliant nested types (list/element) are what BigQuery's list inference expects.
        self._writer = pq.ParquetWriter(self._path, self._arrow_schema, use_compliant_nested_type=True)

    def _check_columns(self, result_schema):
        table_names = [f.name for f in self._bq_schema]
        extra = [n for n in result_schema.names if n not in table_names]
        if extra:
            raise BadInput(
                f"results do not fit table {self.table_id}: it has no column "
                f"{', '.join(extra)} (table columns: {', '.join(table_names)}; result columns: "
                f"{', '.join(result_schema.names)})"
            )
        needed = [f.name for f in self._bq_schema if f.mode in ("REQUIRED", "REPEATED") and f.name not in result_schema.names]
        if needed:
            raise BadInput(
                f"results do not fit table {self.table_id}: they have no column "
                f"{', '.join(needed)}, which the table requires (result columns: "
                f"{', '.join(result_schema.names)})"
            )

    def _convert(self, batch):
        arrays = []
        for target, bq_field in zip(self._arrow_schema, self._bq_schema):
            if target.name not in batch.schema.names:
                arrays.append(pa.nulls(batch.num_rows, target.type))
                continue
            column = batch.column(batch.schema.get_field_index(target.name))
            if column.type != target.type:
                try:
                    column = column.cast(target.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
                    raise BadInput(
                        f"results do not fit table {self.table_id}: column {target.name!r} is "
                        f"{column.type} but the table's column is {_describe(bq_field)} "
                        f"({str(err).splitlines()[0]})"
                    ) from None
            arrays.append(column)
        return pa.RecordBatch.from_arrays(arrays, schema=self._arrow_schema)

    # -- commit / abort -----------------------------------------------------------------

    def commit(self):
        """Load every staged row in one job; idempotent per run (module docstring)."""
        if self._closed:
            return
        try:
            if self._writer is not None:
                self._writer.close()
            elif self.mode == "overwrite" and self._table is not None:
                self._start_empty()  # no rows this run: overwrite still empties the table
            if self._writer is not None:
                self.job_id = self._load()
        finally:
            self._cleanup()

    def abort(self):
        """Drop the staged rows; the table is not touched."""
        if self._closed:
            return
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._cleanup()

    def _start_empty(self):
        self._start(arrow_schema_for(self._bq_schema, self.table_id))
        self._writer.close()

    def _cleanup(self):
        self._closed = True
        if self._path is not None:
            try:
                os.unlink(self._path)
            except OSError:
                pass
            self._path = None
        self._close_client()

    def _close_client(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- the load job -------------------------------------------------------------------

    def _needs_content_hash(self):
        return not (self.run_id or self.ledger_key or os.environ.get("ORCHZIP_RUN_ID")) \
            and bool(os.environ.get("WALLAROO_TASK_ID"))

    def run_key(self):
        """What names this run's load job, the same on every retry of the run.

        The run's idempotency key (``ledger_key``: the same for every retry of one fire)
        comes first: a retry of a run whose load did commit finds that job and loads nothing.
        """
        if self.run_id:
            return str(self.run_id)
        if self.ledger_key:
            return str(self.ledger_key)
        if os.environ.get("ORCHZIP_RUN_ID"):
            return os.environ["ORCHZIP_RUN_ID"]
        if os.environ.get("WALLAROO_TASK_ID"):
            return f"{os.environ['WALLAROO_TASK_ID']}-{self._hash.hexdigest()[:16]}"
        return uuid.uuid4().hex

    def job_id_base(self):
        key = self.run_key()
        digest = hashlib.sha256(f"{self.table_id}|{self.mode}|{key}".encode("utf-8")).hexdigest()[:16]
        return f"orchzip_{re.sub(r'[^A-Za-z0-9_-]', '_', key)[:64]}_{digest}"

    def target(self):
        # The job id base names this key's load jobs, so that after a kill the runner can ask
        # BigQuery's job history (see committed_by) whether the load ran.
        base = self.job_id_base() if (self.run_id or self.ledger_key) else None
        return {"type": "BIGQUERY", "table_id": self.table_id, "job_id_base": base,
                "connection": self.settings.name}

    def _load_config(self):
        module = bigquery()
        config = module.LoadJobConfig(
            source_format=module.SourceFormat.PARQUET,
            schema=self._bq_schema,
            write_disposition="WRITE_TRUNCATE" if self.mode == "overwrite" else "WRITE_APPEND",
            create_disposition="CREATE_IF_NEEDED" if self.create else "CREATE_NEVER",
        )
        options = module.ParquetOptions()
        options.enable_list_inference = True  # a Parquet LIST is an ARRAY, not a STRUCT
        config.parquet_options = options
        run = self.ledger_run or os.environ.get("ORCHZIP_RUN_ID")
        if run and re.fullmatch(r"[a-z0-9_-]{1,63}", run):
            config.labels = {"orchzip_run": run}  # names the run a later retry finds it done by
        return config

    def _load(self):
        base, config = self.job_id_base(), self._load_config()
        transient = 0
        for number in range(MAX_JOB_IDS):
            job_id = f"{base}_{number}"
            job, earlier = self._job(job_id, config)
            error = self._wait(job)
            if error is None:
                if earlier:
                    # An earlier try of this key loaded the rows: this commit writes nothing.
                    self.already_committed_by = f"{job.labels.get('orchzip_run', 'an earlier run')} (load job {job_id})" \
                        if getattr(job, "labels", None) else f"an earlier run (load job {job_id})"
                return job_id
            if error.__class__ is BigQueryUnavailable and transient < self.settings.retries:
                transient += 1
                time.sleep(min(0.5 * 2 ** transient, 16.0))
                continue
            if earlier:
                continue  # an earlier try failed (loading nothing); this one may fare better
            raise error
        raise BigQueryFailed(
            f"BIGQUERY connection {self.settings.name!r}: {MAX_JOB_IDS} load jobs of this run "
            f"into {self.table_id} failed (job ids {base}_*); see them in BigQuery's job history"
        )

    def _job(self, job_id, config):
        """``(job, earlier)``: the job with this id, started now or found from an earlier try."""
        from google.api_core.exceptions import Conflict, NotFound

        doing = f"loading the results into {self.table_id}"

        def existing():
            try:
                return self._client.get_job(job_id, location=self.settings.location, retry=None)
            except NotFound:
                return None

        def start():
            with open(self._path, "rb") as fh:
                return self._client.load_table_from_file(
                    fh, self.table_id, job_id=job_id, job_config=config, num_retries=0,
                    size=os.path.getsize(self._path), location=self.settings.location,
                )

        job = with_retries(self.settings, doing, existing)
        if job is not None:
            return job, True
        try:
            return with_retries(self.settings, doing, lambda: _conflict_as_none(start, Conflict)), False
        except _Conflicted:
            # Another try of this run started the same job just now: use that one.
            return with_retries(self.settings, doing, existing), True

    def _wait(self, job):
        """None when ``job`` succeeded, else the OrchzipError its failure means."""
        doing = f"loading the results into {self.table_id} (job {job.job_id})"
        try:
            with google_errors(self.settings, doing):
                job.result(retry=page_retry(self.settings))
        except OrchzipError as err:
            if job.error_result is None and job.state != "DONE":
                raise  # could not learn the job's outcome
            return _job_error(err, job, self.table_id, self.settings)
        return None


class _Conflicted(Exception):
    pass


def _conflict_as_none(call, conflict_type):
    try:
        return call()
    except conflict_type:
        raise _Conflicted() from None


def _job_error(err, job, table_id, settings):
    reason = (job.error_result or {}).get("reason")
    message = settings.scrub((job.error_result or {}).get("message") or str(err))
    where = f"BIGQUERY connection {settings.name!r}"
    if reason in _TRANSIENT_JOB_REASONS:
        return BigQueryUnavailable(f"{where}: load job {job.job_id} into {table_id} failed: {message}")
    if reason == "invalid" or isinstance(err, BadInput):
        return BadInput(f"{where}: results do not fit table {table_id}: load job {job.job_id} failed: {message}")
    return BigQueryFailed(f"{where}: load job {job.job_id} into {table_id} failed: {message}")


def _update_hash(hasher, batch):
    """Feed the batch's values (not its timestamps, which differ between retries) to ``hasher``."""
    for field, column in zip(batch.schema, batch.columns):
        if pa.types.is_timestamp(field.type):
            continue
        hasher.update(field.name.encode("utf-8"))
        if _is_list(field.type):
            lengths = pc.list_value_length(column).fill_null(-1)
            hasher.update(np.ascontiguousarray(lengths.to_numpy(zero_copy_only=False)).tobytes())
            column = column.flatten()
        values = column.to_numpy(zero_copy_only=False)
        hasher.update(np.ascontiguousarray(values).tobytes() if values.dtype != object else repr(values.tolist()).encode())


def committed_by(target, key, details=None):
    """Whether a load job of ``target``'s job id base succeeded: the run that did, or None.

    The ids ``<base>_0``, ``<base>_1``... are tried in order, so the first id BigQuery does
    not know ends the search. A job still running has no answer yet (an error: unknown).
    :param details: the connection's details (with its key), to reach BigQuery.
    """
    from google.api_core.exceptions import NotFound

    from ..context import Connection
    from .bigquery_common import BigQuerySettings

    if not target.get("job_id_base") or details is None:
        raise LookupError("no job id or no credentials to look it up with")
    settings = BigQuerySettings(Connection(target.get("connection") or "bq", "BIGQUERY", details))
    client = make_client(settings)
    try:
        for number in range(MAX_JOB_IDS):
            try:
                job = client.get_job(f"{target['job_id_base']}_{number}", location=settings.location, retry=None)
            except NotFound:
                return None
            if job.state != "DONE":
                raise LookupError(f"load job {job.job_id} is still {job.state}")
            if job.error_result is None:
                return (job.labels or {}).get("orchzip_run") or f"an earlier run (load job {job.job_id})"
        return None
    finally:
        client.close()
