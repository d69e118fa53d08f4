"""HTTP connections: an Arrow IPC file (or stream) served at a URL. Read-only.

Details: ``{"host": "https://example.com/data/xtest-1k.arrow"}`` as in the Wallaroo tutorials,
optionally ``"headers": {"Authorization": "Bearer ${TOKEN}"}``. The body is downloaded to a
temporary file (an Arrow IPC *file* needs random access to its footer) and read from there
in batches, so memory stays bounded however large the file is. Uses only the stdlib's urllib.
"""

import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import pyarrow as pa

from ..errors import BadInput, ConfigError, OrchzipError, TransientError
from . import Source
from .file_connector import _rebatch

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT_SECONDS = 60


class FetchFailed(OrchzipError, TransientError):
    """The server did not answer, or answered with a 5xx or 429: a later try may succeed."""


def open_source(connection, timeout=DEFAULT_TIMEOUT_SECONDS, **_options):
    url = connection.details.get("host") or connection.details.get("url")
    if not url:
        raise ConfigError(f"HTTP connection {connection.name!r} has no 'host' (the URL to read) in its details")
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"HTTP connection {connection.name!r}: {safe_url(url)} is not an http:// or https:// URL"
        )
    headers = dict(connection.details.get("headers") or {})
    return HttpSource(connection.name, url, headers, timeout)


def open_sink(connection, **_options):
    raise ConfigError(
        f"HTTP connection {connection.name!r} is read-only: write the results to a BIGQUERY, "
        f"DUCKDB or FILE connection"
    )


def safe_url(url):
    """``url`` without credentials or a query string, fit for a log or an error."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class HttpSource(Source):
    def __init__(self, name, url, headers, timeout):
        self.name, self.url, self.headers, self.timeout = name, url, headers, timeout

    def batches(self, batch_size):
        with tempfile.TemporaryDirectory(prefix="orchzip-http-") as tmp:
            path = os.path.join(tmp, "body.arrow")
            self._download(path)
            try:
                yield from (b for b in _rebatch(_ipc_batches(path), batch_size) if b.num_rows)
            except (pa.ArrowInvalid, OSError) as err:
                raise BadInput(
                    f"{safe_url(self.url)} of connection {self.name!r} did not serve an Arrow IPC "
                    f"file or stream: {str(err).splitlines()[0]}"
                ) from None

    def _download(self, path):
        request = urllib.request.Request(self.url, headers=self.headers)
        shown = safe_url(self.url)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response, open(path, "wb") as out:
                shutil.copyfileobj(response, out, CHUNK_BYTES)
        except urllib.error.HTTPError as err:
            if err.code >= 500 or err.code == 429:
                raise FetchFailed(f"GET {shown} of connection {self.name!r} answered HTTP {err.code}; try again later") from None
            raise ConfigError(
                f"GET {shown} of connection {self.name!r} answered HTTP {err.code} {err.reason}; "
                f"check the connection's 'host'"
            ) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise FetchFailed(f"cannot GET {shown} of connection {self.name!r}: {reason}") from None


def _ipc_batches(path):
    with pa.memory_map(path) as source:
        try:
            reader = pa.ipc.open_file(source)
        except pa.ArrowInvalid:
            source.seek(0)
            yield from pa.ipc.open_stream(source)
            return
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
