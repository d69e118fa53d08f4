"""BIGQUERY connections: read a table or a query as Arrow batches, write results all-or-nothing.

Details, as in the Wallaroo tutorials: a Google service-account key (``type``, ``project_id``,
``private_key_id``, ``private_key``, ``client_email``, ``token_uri``, ...) plus ``dataset`` and
``table``. Without a key, application default credentials are used. Optional keys:

- ``project``: the project to bill and to find the dataset in (default: the key's ``project_id``);
- ``location``: where jobs run (e.g. ``US``);
- ``api_endpoint``: the REST endpoint of an emulator, e.g. ``http://127.0.0.1:9050``
  (env ``BIGQUERY_EMULATOR_HOST`` works too);
- ``grpc_endpoint``: ``host:port`` of an emulator's Storage API over plain gRPC (env
  ``BIGQUERY_STORAGE_EMULATOR_HOST``). It is never derived from ``api_endpoint``: with an emulator
  and no ``grpc_endpoint`` reads use REST pages, so a test never reaches Google's public endpoint;
- ``read_api``: ``auto`` (default: the Storage Read API when google-cloud-bigquery-storage is
  installed, REST pages otherwise), ``storage`` or ``rest``;
- ``retries`` (default 5) and ``retry_seconds`` (default 60): how often and how long a quota or
  transient error is retried with exponential backoff before the run fails.

This module is the factory the shim finds by connection type: it opens sources and sinks.
Reading is in ``bigquery_read``, writing in ``bigquery_write``; what both need (the settings,
the client, the one boundary where Google's errors become orchzip's) is in ``bigquery_common``.
google-cloud-bigquery is imported only when a BIGQUERY connection is used.
"""

from .bigquery_common import (  # noqa: F401  (re-exported: the errors users catch)
    BadCredentials,
    BigQueryFailed,
    BigQuerySettings,
    BigQueryUnavailable,
    MissingTable,
)

__all__ = [
    "BigQuerySettings",
    "BadCredentials",
    "MissingTable",
    "BigQueryUnavailable",
    "BigQueryFailed",
    "open_source",
    "open_sink",
]


def open_source(connection, query=None, table=None, **_options):
    """A source over the connection's table, or ``query``'s result (``table`` overrides)."""
    from .bigquery_read import BigQuerySource

    return BigQuerySource(BigQuerySettings(connection), query=query, table=table)


def open_sink(connection, mode="append", create=False, table=None, run_id=None, staging_dir=None, **_options):
    """An all-or-nothing sink into the connection's table (see ``bigquery_write``).

    :param mode: ``append`` or ``overwrite`` (the table's rows replaced at commit).
    :param create: create the table, with a schema from the results, if it does not exist.
    :param table: a table other than the details' one.
    :param run_id: what identifies this run across retries (default: env ``ORCHZIP_RUN_ID``,
        or on Wallaroo ``WALLAROO_TASK_ID`` plus a hash of the results).
    :param staging_dir: where the results wait until commit (default: the temp directory).
    """
    from .bigquery_write import BigQuerySink

    return BigQuerySink(
        BigQuerySettings(connection), mode=mode, create=create, table=table, run_id=run_id,
        staging_dir=staging_dir,
    )
