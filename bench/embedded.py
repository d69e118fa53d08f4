"""Benchmark: `orchzip run` of houseprice_local against the script a user would write, and the ceiling.

    python bench/embedded.py --rows 1000000
    python bench/embedded.py --rows 10000000 --pairs 3

Writes N rows of house inputs into a DuckDB table, then, after one warm-up of each side,
alternates --pairs pairs (A, B then B, A, ...), each followed by C:
  A  `orchzip run` of orchestrations/houseprice_local (DuckDB in, ONNX, DuckDB out);
  B  the plain sequential script a user would write, also started by `orchzip run` so that
     start-up costs are equal: DuckDB fetch_record_batch -> float32 -> InferenceSession.run ->
     INSERT of an Arrow table with the same four columns;
  C  the ceiling: onnxruntime alone on the same rows already in memory (its loop only).
All three run in the same task environment (the same interpreter, duckdb and onnxruntime:
the generated orchestrations share houseprice_local's requirements.txt). Output rows are
counted with a query after every run. Prints min and median of each side, A's speed against
B (target >= 1.0, aim 1.3) and against C (target >= 0.5), the CPU seconds each side used
(orchzip run and its task, from the kernel's accounting of waited-for children) and the peak
RSS of A and B (orchzip run and its task, sampled every 50 ms), and the load average.
"""

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
from orchzip_shim import DEFAULT_BATCH_SIZE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(os.path.dirname(REPO), "shared", "wallaroo-tutorial-data", "rf_model.onnx")
HOUSEPRICE_LOCAL = os.path.join(REPO, "orchestrations", "houseprice_local")

# B: what a user writes without orchzip (paths filled in by the benchmark).
PLAIN_SCRIPT = '''
import datetime
import duckdb
import numpy as np
import onnxruntime as ort
import pyarrow as pa

DATABASE, MODEL, BATCH = {database!r}, {model!r}, {batch}
session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
reader_db = duckdb.connect(DATABASE)
writer_db = reader_db.cursor()
writer_db.execute("CREATE OR REPLACE TABLE script_results "
                  "(time TIMESTAMP, in_tensor DOUBLE[], out_variable FLOAT[], anomaly_count BIGINT)")
writer_db.execute("BEGIN")  # one transaction: committing per batch under an open scan is quadratic in DuckDB
batches = reader_db.execute("SELECT tensor FROM house_inputs").fetch_record_batch(BATCH)
rows = 0
for batch in batches:
    tensor = batch.column(0)
    x = tensor.flatten().to_numpy().astype(np.float32).reshape(-1, 18)
    y = session.run(None, {{name: x}})[0].astype(np.float32).reshape(len(x), -1)
    out = pa.ListArray.from_arrays(pa.array(np.arange(0, y.size + 1, y.shape[1], dtype=np.int32)), pa.array(y.reshape(-1)))
    now = pa.array(np.full(len(x), np.datetime64(datetime.datetime.now(), "us")))
    result = pa.table({{"time": now, "in_tensor": tensor, "out_variable": out,
                        "anomaly_count": pa.array(np.zeros(len(x), dtype=np.int64))}})
    writer_db.register("result", result)
    writer_db.execute("INSERT INTO script_results SELECT * FROM result")
    writer_db.unregister("result")
    rows += len(x)
writer_db.execute("COMMIT")
print(f"rows written: {{rows}}")
'''

# C: onnxruntime alone on rows already in memory; only the loop is timed.
CEILING_SCRIPT = '''
import time
import duckdb
import numpy as np
import onnxruntime as ort

DATABASE, MODEL, BATCH = {database!r}, {model!r}, {batch}
with duckdb.connect(DATABASE, read_only=True) as db:
    table = db.execute("SELECT tensor FROM house_inputs").fetch_arrow_table()
x = table.column("tensor").combine_chunks().flatten().to_numpy().astype(np.float32).reshape(-1, 18)
del table
session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
started = time.perf_counter()
for start in range(0, len(x), BATCH):
    session.run(None, {{name: x[start:start + BATCH]}})
print(f"CEILING seconds={{time.perf_counter() - started:.6f}} rows={{len(x)}}")
'''


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


def orchestration(folder, main_py):
    """A folder with main.py and houseprice_local's requirements.txt (so: the same environment)."""
    os.makedirs(folder)
    with open(os.path.join(folder, "main.py"), "w") as fh:
        fh.write(main_py)
    shutil.copy(os.path.join(HOUSEPRICE_LOCAL, "requirements.txt"), folder)
    return folder


def setup_state(state_dir, database, model):
    from orchzip.runtime.store import Store

    store = Store(state_dir)
    store.create_connection("houseprice_inputs", "DUCKDB", {"path": database, "table": "house_inputs"})
    store.create_connection("houseprice_results", "DUCKDB", {"path": database, "table": "house_results"})
    store.create_pipeline("houseprice", model)
    store.close()


def count_rows(database, table):
    import duckdb

    with duckdb.connect(database, read_only=True) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


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
                self.mib = max(self.mib, sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
            except psutil.Error:
                pass
            self._done.wait(0.05)

    def stop(self):
        self._done.set()
        self.join()


def orchzip_run(state_dir, target, extra):
    """One `orchzip run`: wall seconds, CPU seconds of it and its task, peak RSS MiB, the run record."""
    command = [sys.executable, "-m", "orchzip", "--state-dir", state_dir, "run", target, "--json", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = PeakMemory(process.pid)
    peak.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    peak.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        try:
            with open(json.loads(stdout)["log_path"], encoding="utf-8") as fh:
                stderr += "\n" + fh.read()[-3000:]
        except (ValueError, KeyError, OSError):
            pass
        sys.exit(f"orchzip run {target} failed:\n{stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, peak.mib, json.loads(stdout)


def ceiling_seconds(run):
    with open(run["log_path"], encoding="utf-8") as fh:
        for line in fh:
            if "CEILING seconds=" in line:
                return float(line.split("CEILING seconds=")[1].split()[0])
    sys.exit(f"the ceiling run printed no CEILING line: {run['log_path']}")


def summary(label, values, rows, unit="s"):
    return (f"{label:34} min {min(values):7.2f} {unit}  median {statistics.median(values):7.2f} {unit}"
            f"  ({rows / statistics.median(values):12,.0f} rows/s at the median)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=5, help="alternating pairs after the warm-up (default 5)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"rows per batch on every side (default: the shim's, {DEFAULT_BATCH_SIZE:,})")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--no-env", action="store_true", help="run the tasks in orchzip's own Python")
    opts = parser.parse_args()
    extra = ["--no-env"] if opts.no_env else []

    with tempfile.TemporaryDirectory(prefix="orchzip-bench-") as tmp:
        state_dir, database = os.path.join(tmp, "state"), os.path.join(tmp, "bench.duckdb")
        started = time.perf_counter()
        write_inputs(database, opts.rows)
        print(f"wrote {opts.rows:,} rows of inputs in {time.perf_counter() - started:.1f} s")
        setup_state(state_dir, database, opts.model)
        fill = dict(database=database, model=os.path.abspath(opts.model), batch=opts.batch_size)
        sides = {
            "A": [HOUSEPRICE_LOCAL, "--arg", f"batch_size={opts.batch_size}"],
            "B": [orchestration(os.path.join(tmp, "plain_script"), PLAIN_SCRIPT.format(**fill))],
            "C": [orchestration(os.path.join(tmp, "ceiling"), CEILING_SCRIPT.format(**fill))],
        }
        outputs = {"A": "house_results", "B": "script_results"}
        wall, cpu, peak, ceiling = {"A": [], "B": []}, {"A": [], "B": []}, {"A": [], "B": []}, []
        loads = []  # the 1-minute load average when each measured run started
        for side in "ABC":  # warm-up: environments built, files cached; not counted
            orchzip_run(state_dir, sides[side][0], sides[side][1:] + extra)
        for pair in range(opts.pairs):
            for side in ("AB" if pair % 2 == 0 else "BA") + "C":
                loads.append(os.getloadavg()[0])
                seconds, cpu_seconds, mib, run = orchzip_run(state_dir, sides[side][0], sides[side][1:] + extra)
                if side == "C":
                    ceiling.append(ceiling_seconds(run))
                    continue
                written = count_rows(database, outputs[side])
                if written != opts.rows:
                    sys.exit(f"side {side} wrote {written:,} rows, not {opts.rows:,}")
                wall[side].append(seconds)
                cpu[side].append(cpu_seconds)
                peak[side].append(mib)

    rows = opts.rows
    print(f"rows: {rows:,}  batch size: {opts.batch_size:,}  model: {os.path.basename(opts.model)}  "
          f"pairs: {opts.pairs} after a warm-up  task env: {'orchzip own Python' if opts.no_env else 'built from requirements.txt'}")
    print(summary("(A) orchzip run houseprice_local", wall["A"], rows))
    print(summary("(B) the plain script, orchzip run", wall["B"], rows))
    print(summary("(C) onnxruntime alone, loop only", ceiling, rows))
    per_pair = [b / a for a, b in zip(wall["A"], wall["B"])]
    print(f"A against B (B's time / A's): median {statistics.median(per_pair):.2f}, "
          f"min {min(per_pair):.2f}, max {max(per_pair):.2f}  (target >= 1.0, aim 1.3)")
    print(f"A against the ceiling (C's time / A's): median {statistics.median(ceiling) / statistics.median(wall['A']):.2f}"
          f"  (target >= 0.5)")
    print(f"CPU seconds per run, median: A {statistics.median(cpu['A']):.2f}, B {statistics.median(cpu['B']):.2f}"
          f"  (A keeps {statistics.median(cpu['A']) / statistics.median(wall['A']):.2f} cores busy, "
          f"B {statistics.median(cpu['B']) / statistics.median(wall['B']):.2f})")
    print(f"peak RSS, orchzip run and its task: A {max(peak['A']):,.0f} MiB, B {max(peak['B']):,.0f} MiB")
    print(f"load average (1 min) as the measured runs started: min {min(loads):.1f}, median "
          f"{statistics.median(loads):.1f}, max {max(loads):.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
