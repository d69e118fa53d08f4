"""Benchmark: `orchzip run` of the embedded house-price orchestration against the model alone.

    python bench/embedded.py --rows 1000000
    python bench/embedded.py --rows 10000000

Writes N rows of house inputs into a DuckDB table (the embedded source), then times
(a) `orchzip run` of orchestrations/houseprice_local end to end (DuckDB in, ONNX model,
    DuckDB out; a real child process, as a user runs it), and
(b) the ceiling: onnxruntime alone on the same rows, in this process, same batch size.
Prints rows/s of each, the ratio a/b, and a's peak RSS (orchzip run and its task together,
sampled every 50 ms).
Targets: ratio >= 0.8; peak RSS at 10M rows <= 1.5x the peak at 1M rows.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(os.path.dirname(REPO), "shared", "wallaroo-tutorial-data", "rf_model.onnx")


def load_houses_module():
    path = os.path.join(REPO, "examples", "houseprice", "make_example.py")
    spec = importlib.util.spec_from_file_location("make_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_inputs(database, rows, chunk=1_000_000):
    """N rows of house features in table house_inputs, made a million at a time."""
    import duckdb

    houses = load_houses_module()
    rng = np.random.default_rng(7)
    with duckdb.connect(database) as db:
        db.execute("CREATE OR REPLACE TABLE house_inputs (tensor DOUBLE[])")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            values = houses.make_houses(rng, n).reshape(-1)
            offsets = pa.array(np.arange(0, n * 18 + 1, 18, dtype=np.int32))
            part = pa.table({"tensor": pa.ListArray.from_arrays(offsets, pa.array(values))})
            db.register("part", part)
            db.execute("INSERT INTO house_inputs SELECT tensor FROM part")
            db.unregister("part")


def setup_state(state_dir, database, model):
    from orchzip.runtime.store import Store

    store = Store(state_dir)
    store.create_connection("houseprice_inputs", "DUCKDB", {"path": database, "table": "house_inputs"})
    store.create_connection("houseprice_results", "DUCKDB", {"path": database, "table": "house_results"})
    store.create_pipeline("houseprice", model)
    store.close()


def time_orchzip_run(state_dir, batch_size, extra):
    from orchzip.builder import build

    zip_path = build(os.path.join(REPO, "orchestrations", "houseprice_local"), os.path.join(state_dir, "dist")).zip_path
    command = [sys.executable, "-m", "orchzip", "--state-dir", state_dir, "run", zip_path,
               "--arg", f"batch_size={batch_size}", "--json", *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = PeakMemory(process.pid)
    peak.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    peak.stop()
    if process.returncode != 0:
        sys.exit(f"orchzip run failed:\n{stdout}\n{stderr}")
    return seconds, json.loads(stdout), peak.mib


class PeakMemory(threading.Thread):
    """The largest total RSS of a process tree (orchzip run and its task), sampled every 50 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.mib, self._done = pid, 0.0, threading.Event()

    def run(self):
        import psutil

        while not self._done.is_set():
            try:
                root = psutil.Process(self.pid)
                tree = [root] + root.children(recursive=True)
                total = sum(p.memory_info().rss for p in tree if p.is_running())
                self.mib = max(self.mib, total / 2**20)
            except psutil.Error:
                pass
            self._done.wait(0.05)

    def stop(self):
        self._done.set()
        self.join()


def time_model_alone(database, model, batch_size):
    import duckdb
    import onnxruntime as ort

    with duckdb.connect(database, read_only=True) as db:
        relation = db.sql("SELECT tensor FROM house_inputs")
        table = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
    x = table.column("tensor").combine_chunks().flatten().to_numpy().astype(np.float32).reshape(-1, 18)
    del table
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    started = time.perf_counter()
    for start in range(0, len(x), batch_size):
        session.run(None, {name: x[start:start + batch_size]})
    return time.perf_counter() - started, len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--env", action="store_true", help="run in the zip's task environment (default: --no-env)")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="orchzip-bench-") as tmp:
        state_dir, database = os.path.join(tmp, "state"), os.path.join(tmp, "bench.duckdb")
        started = time.perf_counter()
        write_inputs(database, opts.rows)
        print(f"wrote {opts.rows:,} rows of inputs in {time.perf_counter() - started:.1f} s")
        setup_state(state_dir, database, opts.model)
        extra = [] if opts.env else ["--no-env"]
        run_seconds, run, peak_mib = time_orchzip_run(state_dir, opts.batch_size, extra)
        assert run["rows_written"] == opts.rows, run
        model_seconds, rows = time_model_alone(database, opts.model, opts.batch_size)

    a, b = opts.rows / run_seconds, rows / model_seconds
    print(f"rows: {opts.rows:,}  batch size: {opts.batch_size:,}  model: {os.path.basename(opts.model)}")
    print(f"(a) orchzip run end to end: {run_seconds:8.2f} s  {a:12,.0f} rows/s  (inside the task: {run['seconds']:.2f} s)")
    print(f"(b) onnxruntime alone:      {model_seconds:8.2f} s  {b:12,.0f} rows/s")
    print(f"ratio a/b: {a / b:.3f}  (target >= 0.8)")
    print(f"peak RSS of (a), orchzip run and its task: {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
