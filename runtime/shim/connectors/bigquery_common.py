"""What reading and writing BIGQUERY connections share: the settings, the client, and the one
boundary where Google's errors become orchzip's.

``bigquery_connector`` (the factory the shim finds by connection type) opens sources and sinks;
``bigquery_read`` and ``bigquery_write`` implement them. Both import this module, never the
factory, so the three do not import each other in a circle.
google-cloud-bigquery is imported only when a BIGQUERY connection is used.
"""

import contextlib
import os
import time

from ..errors import BadInput, ConfigError, MissingDependency, OrchzipError, TerminalError, TransientError

__all__ = [
    "BigQuerySettings",
    "BadCredentials",
    "MissingTable",
    "BigQueryUnavailable",
    "BigQueryFailed",
]

PIP_LINE = ["google-cloud-bigquery", "google-auth"]
EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"
STORAGE_EMULATOR_ENV = "BIGQUERY_STORAGE_EMULATOR_HOST"
SCOPES = ["https://www.googleapis.com/auth/bigquery"]
READ_APIS = ("auto", "storage", "rest")
# Keys of a connection's details that are orchzip's, not part of the service-account key.
_OWN_KEYS = {
    "dataset", "table", "project", "location", "api_endpoint", "grpc_endpoint", "read_api",
    "retries", "retry_seconds",
}
_SECRET_KEYS = ("private_key", "private_key_id")
# Error reasons BigQuery gives for conditions that pass (see "Troubleshoot errors" in its docs).
_TRANSIENT_REASONS = {"rateLimitExceeded", "quotaExceeded", "backendError", "internalError", "badGateway"}


class BadCredentials(ConfigError):
    """The connection's key is malformed, refused, or there are no credentials at all."""


class MissingTable(ConfigError):
    """The dataset or table a connection names does not exist."""

    missing = "table"  # or "dataset"


class BigQueryUnavailable(OrchzipError, TransientError):
    """Quota, rate limit, 5xx or an unreachable endpoint, still failing after the retries."""


class BigQueryFailed(OrchzipError, TerminalError):
    """BigQuery refused a request for a reason that retrying will not fix."""


def bigquery():
    """The google.cloud.bigquery module, or MissingDependency with the pip line."""
    try:
        from google.cloud import bigquery as module
    except ImportError:
        raise MissingDependency.from_args("a BIGQUERY connection", PIP_LINE) from None
    return module


class BigQuerySettings:
    """A BIGQUERY connection's details, checked; ``repr`` never shows the key."""

    def __init__(self, connection):
        details = connection.details
        self.name = connection.name
        self.key = {k: v for k, v in details.items() if k not in _OWN_KEYS} or None
        if self.key is not None and not ("private_key" in self.key or self.key.get("type") == "service_account"):
            self.key = None  # stray keys, not a service-account key: use default credentials
        self.dataset = details.get("dataset")
        self.table = details.get("table")
        self.project = details.get("project") or details.get("project_id")
        self.location = details.get("location")
        self.api_endpoint = details.get("api_endpoint") or os.environ.get(EMULATOR_ENV) or None
        self.grpc_endpoint = details.get("grpc_endpoint") or os.environ.get(STORAGE_EMULATOR_ENV) or None
        self.read_api = str(details.get("read_api") or "auto").lower()
        if self.read_api not in READ_APIS:
            raise ConfigError(
                f"BIGQUERY connection {self.name!r}: read_api {self.read_api!r} is not one of: "
                f"{', '.join(READ_APIS)}"
            )
        self.retries = _number(details, "retries", 5, self.name, int)
        self.retry_seconds = _number(details, "retry_seconds", 60.0, self.name, float)

    def __repr__(self):
        return (
            f"BigQuerySettings(connection={self.name!r}, project={self.project!r}, "
            f"dataset={self.dataset!r}, table={self.table!r}, key={'<hidden>' if self.key else None})"
        )

    @property
    def who(self):
        """Whose credentials, for messages: the service account's e-mail, never the key."""
        if self.key:
            return f"service account {self.key.get('client_email', '(no client_email)')}"
        return "application default credentials"

    def table_id(self, table=None, dataset=None):
        """``project.dataset.table`` for ``table`` (default: the details' table)."""
        table = table or self.table
        if not table:
            raise ConfigError(f"BIGQUERY connection {self.name!r} names no 'table' in its details")
        parts = table.split(".")
        if len(parts) == 3:
            return table
        if len(parts) == 2:
            return f"{self.project}.{table}"
        dataset = dataset or self.dataset
        if not dataset:
            raise ConfigError(f"BIGQUERY connection {self.name!r} names no 'dataset' in its details")
        return f"{self.project}.{dataset}.{table}"

    def scrub(self, text):
        """``text`` with any secret of the key replaced, for an error message."""
        for name in _SECRET_KEYS:
            secret = (self.key or {}).get(name)
            if secret and isinstance(secret, str):
                text = text.replace(secret, "<hidden>")
        return text


def _number(details, key, default, name, kind):
    value = details.get(key, default)
    try:
        value = kind(value)
    except (TypeError, ValueError):
        value = -1
    if value < 0:
        raise ConfigError(f"BIGQUERY connection {name!r}: {key} must be a number >= 0, not {details.get(key)!r}")
    return value


def credentials(settings):
    """google-auth credentials for the connection (see the module docstring)."""
    if settings.key:
        try:
            from google.oauth2 import service_account
        except ImportError:
            raise MissingDependency.from_args("a BIGQUERY connection", PIP_LINE) from None
        try:
            return service_account.Credentials.from_service_account_info(settings.key, scopes=SCOPES)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise BadCredentials(
                f"BIGQUERY connection {settings.name!r}: the service-account key in its details is "
                f"not usable ({_key_problem(err, settings)}); paste the JSON key file's fields as "
                f"they are"
            ) from None
    if settings.api_endpoint:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()  # an emulator with no key: it does not check tokens
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        found, project = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError:
        raise BadCredentials(
            f"BIGQUERY connection {settings.name!r} has no service-account key in its details and "
            f"no application default credentials were found; add the key's fields to the details "
            f"or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from None
    settings.project = settings.project or project
    return found


def _key_problem(err, settings):
    text = settings.scrub(_first_line(err))
    if "missing fields" in text or "not in the expected format" in text:
        return text
    if "private_key" in settings.key and ("BEGIN" not in str(settings.key["private_key"])):
        return "private_key is not a PEM private key"
    return "private_key cannot be read as an RSA key" if "key" in text.lower() else type(err).__name__


def make_client(settings):
    """A google.cloud.bigquery Client for the connection."""
    module = bigquery()
    creds = credentials(settings)
    if not settings.project:
        raise ConfigError(
            f"BIGQUERY connection {settings.name!r} names no project: add 'project' (or the "
            f"key's 'project_id') to its details"
        )
    options = {"api_endpoint": settings.api_endpoint} if settings.api_endpoint else None
    return module.Client(
        project=settings.project, credentials=creds, location=settings.location, client_options=options
    )


def is_transient(err):
    """True for errors worth retrying: quota, rate limits, 5xx, connection trouble."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(err, (api.TooManyRequests, api.InternalServerError, api.BadGateway,
                        api.ServiceUnavailable, api.GatewayTimeout, auth.TransportError)):
        return True
    if isinstance(err, api.GoogleAPICallError):
        return _reason(err) in _TRANSIENT_REASONS
    try:
        import requests
    except ImportError:  # pragma: no cover - google-cloud-bigquery depends on requests
        return False
    return isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                            requests.exceptions.ChunkedEncodingError))


def _reason(err):
    try:
        return err.errors[0]["reason"]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def translate(err, settings, doing):
    """The OrchzipError for a Google error ``err`` raised while ``doing`` (a short phrase)."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    where = f"BIGQUERY connection {settings.name!r}"
    text = settings.scrub(_api_message(err))
    if isinstance(err, auth.RefreshError) or isinstance(err, api.Unauthorized):
        return BadCredentials(
            f"{where}: BigQuery refused the credentials of {settings.who} while {doing} ({text}); "
            f"check the key in the connection's details"
        )
    if isinstance(err, auth.GoogleAuthError) and not isinstance(err, auth.TransportError):
        return BadCredentials(f"{where}: cannot use the credentials of {settings.who}: {text}")
    if is_transient(err):
        return BigQueryUnavailable(f"{where}: {doing} failed: {text}")
    if isinstance(err, api.Forbidden):
        return BadCredentials(
            f"{where}: {settings.who} may not do this while {doing} ({text}); grant it the "
            f"BigQuery roles it needs"
        )
    if isinstance(err, api.NotFound):
        return MissingTable(f"{where}: {doing} failed: {text}")
    if isinstance(err, api.BadRequest):
        return BadInput(f"{where}: BigQuery rejected {doing}: {text}")
    return BigQueryFailed(f"{where}: {doing} failed: {text}")


def _api_message(err):
    message = getattr(err, "message", None)
    if not message and getattr(err, "args", None) and isinstance(err.args[0], str):
        message = err.args[0]  # google-auth errors carry the server's answer as a second arg
    return _first_line(message if message else err)


@contextlib.contextmanager
def google_errors(settings, doing):
    """Turn Google's exceptions raised in the block into orchzip's, with one-line messages."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    try:
        yield
    except OrchzipError:
        raise
    except api.RetryError as err:  # a bounded retry ran out: report its last cause
        cause = err.cause or err
        raise BigQueryUnavailable(
            f"BIGQUERY connection {settings.name!r}: {doing} still failed after retrying for "
            f"{settings.retry_seconds:g} s: {settings.scrub(_api_message(cause))}"
        ) from None
    except (api.GoogleAPIError, auth.GoogleAuthError) as err:
        raise translate(err, settings, doing) from None
    except Exception as err:
        if is_transient(err):
            raise translate(err, settings, doing) from None
        raise


def with_retries(settings, doing, call, sleep=time.sleep):
    """``call()`` inside :func:`google_errors`, retried on transient errors with backoff.

    Tries ``1 + settings.retries`` times; waits 0.5 s, 1 s, 2 s, ... (at most 16 s) in between.
    """
    attempts = settings.retries + 1
    for attempt in range(attempts):
        try:
            with google_errors(settings, doing):
                return call()
        except BigQueryUnavailable as err:
            if attempt + 1 >= attempts:
                raise BigQueryUnavailable(f"{err} (gave up after {attempts} attempts)") from None
            sleep(min(0.5 * 2 ** attempt, 16.0))
    raise AssertionError("unreachable")  # pragma: no cover


def page_retry(settings):
    """A bounded google.api_core Retry for calls the client repeats itself (result pages)."""
    from google.api_core.retry import Retry

    return Retry(predicate=is_transient, initial=0.5, maximum=16.0, multiplier=2.0,
                 timeout=settings.retry_seconds)


def existing_table(client, settings, table_id, doing):
    """The Table ``table_id``, or MissingTable naming the dataset or table that is missing."""
    from google.api_core.exceptions import NotFound

    def get():
        try:
            return client.get_table(table_id, retry=None)
        except NotFound:
            return None

    table = with_retries(settings, doing, get)
    if table is None:
        raise missing(client, settings, table_id, doing)
    return table


def missing(client, settings, table_id, doing, for_sink=False):
    """A MissingTable error that names what is missing: the dataset, or else the table."""
    from google.api_core.exceptions import NotFound

    project, dataset, table = table_id.split(".")

    def dataset_exists():
        try:
            client.get_dataset(f"{project}.{dataset}", retry=None)
            return True
        except NotFound:
            return False

    where = f"BIGQUERY connection {settings.name!r}"
    if not with_retries(settings, doing, dataset_exists):
        error = MissingTable(
            f"{where}: dataset {project}.{dataset} does not exist (while {doing}); create it or "
            f"fix 'dataset' in the connection's details"
        )
        error.missing = "dataset"
        return error
    hint = ", or let the sink create it (create=True)" if for_sink else ""
    return MissingTable(
        f"{where}: table {table_id} does not exist (while {doing}); fix 'table' in the "
        f"connection's details{hint}"
    )


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
