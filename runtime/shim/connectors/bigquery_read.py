"""Reading a BIGQUERY connection as a stream of Arrow record batches, never all at once.

Two ways, chosen per connection (details ``read_api``):

- the **Storage Read API** (google-cloud-bigquery-storage): one read stream whose messages are
  Arrow record batches, decoded straight from their buffers; ``ARRAY<FLOAT64>`` arrives as a
  ``list<double>`` column with no Python object per value. A query is run first and its result
  table read the same way.
- **REST pages** (``tabledata.list`` / ``jobs.getQueryResults``), one page of ``batch_size`` rows
  at a time, each turned into Arrow by google-cloud-bigquery. Slower (JSON), but needs only the
  client library.

Only a few batches are held at a time either way: the caller pulls the next one when it needs it.
"""

from . import Source
from .bigquery_common import (
    existing_table,
    google_errors,
    make_client,
    page_retry,
    with_retries,
)
from .file_connector import _rebatch
from ..errors import ConfigError, MissingDependency

__all__ = ["BigQuerySource", "storage_read_client"]

STORAGE_PIP_LINE = ["google-cloud-bigquery-storage"]


def storage_read_client(settings, credentials):
    """A BigQueryReadClient for the connection, or None when reads should use REST pages."""
    if settings.read_api == "rest":
        return None
    try:
        from google.cloud import bigquery_storage_v1
    except ImportError:
        if settings.read_api == "storage":
            raise MissingDependency.from_args("read_api 'storage'", STORAGE_PIP_LINE) from None
        return None
    if settings.grpc_endpoint:
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
            BigQueryReadGrpcTransport,
        )

        # An emulator speaks plain gRPC; real BigQuery is reached through the default transport.
        channel = grpc.insecure_channel(
            settings.grpc_endpoint, options=[("grpc.max_receive_message_length", -1)]
        )
        return bigquery_storage_v1.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
    if settings.api_endpoint:
        if settings.read_api == "storage":
            raise ConfigError(
                f"BIGQUERY connection {settings.name!r} points at an emulator (api_endpoint) but "
                f"gives no grpc_endpoint for read_api 'storage'"
            )
        return None  # never send an emulated connection's reads to Google's public endpoint
    return bigquery_storage_v1.BigQueryReadClient(credentials=credentials)


class BigQuerySource(Source):
    """Rows of a table (details' or ``table``) or of ``query``, as record batches."""

    def __init__(self, settings, query=None, table=None):
        self.settings = settings
        self.query = query
        self.table_id = None if query else settings.table_id(table)
        self._client = make_client(settings)
        self._storage = storage_read_client(settings, self._client._credentials)
        self.read_api = "storage" if self._storage is not None else "rest"
        if self.table_id:  # fail before the run starts when the table is not there
            self._table = existing_table(self._client, settings, self.table_id, f"reading {self.table_id}")

    def __repr__(self):
        what = f"query={self.query[:60]!r}" if self.query else f"table={self.table_id!r}"
        return f"BigQuerySource(connection={self.settings.name!r}, {what}, read_api={self.read_api!r})"

    def batches(self, batch_size):
        """Record batches of ``batch_size`` rows (the last may be shorter)."""
        yield from _rebatch(self._raw_batches(batch_size), batch_size)

    def _raw_batches(self, batch_size):
        if self.query:
            rows = self._run_query(batch_size)
            if self._storage is not None and rows.total_rows:
                # A query's result is a table too (an anonymous one), read over the same API.
                destination = self._query_job.destination
                yield from self._storage_batches(destination, "reading the query's result")
                return
            yield from self._rest_batches(rows, "reading the query's result")
            return
        if self._storage is not None:
            yield from self._storage_batches(self._table, f"reading {self.table_id}")
            return
        rows = self._client.list_rows(self._table, page_size=batch_size, retry=page_retry(self.settings))
        yield from self._rest_batches(rows, f"reading {self.table_id}")

    def _run_query(self, batch_size):
        doing = "running the source query"

        def start():
            return self._client.query(self.query, retry=None, job_retry=None)

        self._query_job = with_retries(self.settings, doing, start)
        with google_errors(self.settings, doing):
            return self._query_job.result(
                page_size=batch_size, retry=page_retry(self.settings), job_retry=None
            )

    def _rest_batches(self, rows, doing):
        # bqstorage_client=None keeps the client from trying Google's Storage endpoint itself.
        pages = iter(rows.to_arrow_iterable(bqstorage_client=None))
        while True:
            with google_errors(self.settings, doing):
                batch = next(pages, None)
            if batch is None:
                return
            if batch.num_rows:
                yield batch

    def _storage_batches(self, table, doing):
        import pyarrow as pa
        from google.cloud.bigquery_storage_v1 import types

        project = self.settings.project
        ref = f"projects/{table.project}/datasets/{table.dataset_id}/tables/{table.table_id}"
        request = types.ReadSession(table=ref, data_format=types.DataFormat.ARROW)

        def create():
            # One stream keeps the rows in table order and memory to one message at a time.
            return self._storage.create_read_session(
                parent=f"projects/{project}", read_session=request, max_stream_count=1
            )

        session = with_retries(self.settings, doing, create)
        if not session.streams:
            return  # an empty table has no streams
        schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
        with google_errors(self.settings, doing):
            # ReadRowsStream resumes at the last offset by itself after a dropped connection.
            messages = iter(self._storage.read_rows(session.streams[0].name))
        while True:
            with google_errors(self.settings, doing):
                message = next(messages, None)
            if message is None:
                return
            payload = message.arrow_record_batch.serialized_record_batch
            if payload:
                yield pa.ipc.read_record_batch(pa.py_buffer(payload), schema)

    def close(self):
        if self._storage is not None:
            transport = getattr(self._storage, "_transport", None)
            if transport is not None:
                transport.close()
            self._storage = None
        if self._client is not None:
            self._client.close()
            self._client = None
