"""The shim's HTTP connector: an Arrow IPC file or stream at a URL, read in batches; read-only."""

import functools
import http.server
import os
import threading

import pyarrow as pa
import pytest

from conftest import TUTORIAL_DATA
from orchzip.errors import BadInput, ConfigError
from orchzip_shim import Connection

XTEST_ARROW = os.path.join(TUTORIAL_DATA, "xtest-1k.arrow")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """``tmp_path`` served over HTTP on loopback; yields the base URL."""
    with pa.memory_map(XTEST_ARROW) as source:
        table = pa.ipc.open_file(source).read_all()
    with pa.OSFile(str(tmp_path / "houses.arrows"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=128)
    with open(XTEST_ARROW, "rb") as src, open(tmp_path / "houses.arrow", "wb") as dst:
        dst.write(src.read())
    (tmp_path / "not-arrow.txt").write_text("hello")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def http_connection(url):
    return Connection("houses", "HTTP", {"host": url})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["houses.arrow", "houses.arrows"])
def test_an_arrow_file_or_stream_is_read_in_batches_of_the_asked_size(served, name):
    with http_connection(f"{served}/{name}").source() as source:
        batches = list(source.batches(300))
    assert [b.num_rows for b in batches] == [300, 300, 300, 100]
    with pa.memory_map(XTEST_ARROW) as src:
        expected = pa.ipc.open_file(src).read_all()
    assert pa.Table.from_batches(batches).equals(expected.combine_chunks())


@pytest.mark.timeout(60)
def test_a_missing_url_names_the_status_and_hides_the_query(served):
    with pytest.raises(ConfigError, match="HTTP 404") as caught:
        list(http_connection(f"{served}/nope.arrow?token=secret").source().batches(100))
    assert "secret" not in str(caught.value)


@pytest.mark.timeout(60)
def test_a_body_that_is_not_arrow_is_bad_input(served):
    with pytest.raises(BadInput, match="did not serve an Arrow IPC file or stream"):
        list(http_connection(f"{served}/not-arrow.txt").source().batches(100))


def test_http_connections_are_read_only():
    with pytest.raises(ConfigError, match="read-only"):
        http_connection("http://127.0.0.1:1/x.arrow").sink()


def test_a_connection_without_a_url_says_what_is_missing():
    with pytest.raises(ConfigError, match="no 'host'"):
        Connection("houses", "HTTP", {}).source()
    with pytest.raises(ConfigError, match="not an http"):
        Connection("houses", "HTTP", {"host": "ftp://example/x.arrow"}).source()
