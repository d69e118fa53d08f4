"""Benchmark: rows/s through `orchzip serve`'s inference endpoint, JSON vs Arrow, vs in-process.

    python bench/serve_infer.py [--requests 50] [--rows 1000]

Starts `orchzip serve` on a free loopback port with a local pipeline on the tutorial's
rf_model.onnx, then sends requests of ROWS rows each, one after another over one keep-alive
connection, as pandas-records JSON and as Arrow IPC; and runs the same rows through the model
in this process (the shim's OnnxModel, as the server does). Prints rows/s of each.
"""

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(REPO), "shared", "wallaroo-tutorial-data")
MODEL = os.path.join(DATA, "rf_model.onnx")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def orchzip(state_dir, *argv, **kwargs):
    return subprocess.run([sys.executable, "-m", "orchzip", "--state-dir", state_dir, *argv],
                          capture_output=True, text=True, check=True, **kwargs)


def start_server(state_dir, port):
    server = subprocess.Popen([sys.executable, "-m", "orchzip", "--state-dir", state_dir, "serve",
                               "--port", str(port), "--no-scheduler"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    sys.exit("orchzip serve did not start within 60 s")


def rows(n):
    with open(os.path.join(DATA, "xtest-1k.df.json"), encoding="utf-8") as fh:
        base = json.load(fh)
    return (base * (n // len(base) + 1))[:n]


def time_requests(session, url, token, body, content_type, count):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    session.post(url, data=body, headers=headers).raise_for_status()  # warm the model cache
    started = time.perf_counter()
    for _ in range(count):
        answer = session.post(url, data=body, headers=headers)
        answer.raise_for_status()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--rows", type=int, default=1000, help="rows per request")
    opts = parser.parse_args()
    records = rows(opts.rows)
    json_body = json.dumps(records).encode()
    table = pa.Table.from_pylist(records)
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    arrow_body = sink.getvalue()

    with tempfile.TemporaryDirectory(prefix="orchzip-serve-bench-") as tmp:
        state_dir = os.path.join(tmp, "state")
        orchzip(state_dir, "pipelines", "create", "houseprice", "--model", MODEL)
        token = orchzip(state_dir, "serve", "--show-token").stdout.strip()
        port = free_port()
        server = start_server(state_dir, port)
        try:
            url = f"http://127.0.0.1:{port}/v1/api/pipelines/infer/houseprice-1/houseprice"
            with requests.Session() as session:
                json_s = time_requests(session, url, token, json_body,
                                       "application/json; format=pandas-records", opts.requests)
                arrow_s = time_requests(session, url, token, arrow_body,
                                        "application/vnd.apache.arrow.file", opts.requests)
        finally:
            server.terminate()
            server.wait(timeout=30)

    from orchzip_shim.models import OnnxModel

    model = OnnxModel(MODEL)
    batch = table.combine_chunks().to_batches()[0]
    model.infer_batch(batch)
    started = time.perf_counter()
    for _ in range(opts.requests):
        model.infer_batch(batch)
    local_s = time.perf_counter() - started

    total = opts.requests * opts.rows
    print(f"{opts.requests} requests of {opts.rows:,} rows (rf_model.onnx)")
    for label, seconds in (("pandas-records JSON", json_s), ("Arrow IPC", arrow_s), ("in-process", local_s)):
        print(f"  {label:20} {total / seconds:12,.0f} rows/s  {1000 * seconds / opts.requests:8.1f} ms/request")


if __name__ == "__main__":
    main()
