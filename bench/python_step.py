"""Benchmark: a Python step's overhead per row, against calling the same function directly.

    python bench/python_step.py
    python bench/python_step.py --rows 200000 --batch-sizes 100,1000,10000 --pairs 5

The step is a Wallaroo Python model (``process_data``) that post-processes 18 house features
per row (a weighted sum and the features scaled), with an input schema of
``fixed_size_list<float32>[18]`` and an output schema of a ``double`` and a
``list<float32>``. For each batch size, after one warm-up of each side, --pairs pairs alternate
(A, B then B, A, ...):

  A  ``WorkerStep.process`` on every batch: the step as a pipeline runs it, in its own worker
     process in the model's environment (Arrow IPC over pipes, Arrow -> NumPy as Wallaroo
     hands the arrays, the answer back to Arrow in the output schema);
  B  the same ``process_data`` called directly in this process on the same rows, already as
     NumPy arrays (the ceiling: no conversion, no process boundary).

Prints min and median of each side, and the step's overhead: (A - B) per row and per batch.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import textwrap
import time

import numpy as np
import pyarrow as pa

STEP = '''
import numpy as np
from mac.types import InferenceData

WEIGHTS = np.linspace(0.5, 1.5, 18, dtype=np.float32)


def process_data(input_data: InferenceData) -> InferenceData:
    features = input_data["tensor"]
    return {"score": features @ WEIGHTS, "scaled": features * np.float32(2.0)}
'''
INPUT = pa.schema([pa.field("tensor", pa.list_(pa.float32(), 18))])
OUTPUT = pa.schema([pa.field("score", pa.float64()), pa.field("scaled", pa.list_(pa.float32()))])


def make_batches(rows, batch_size, seed=7):
    values = np.random.default_rng(seed).normal(size=(rows, 18)).astype(np.float32)
    batches = []
    for start in range(0, rows, batch_size):
        chunk = values[start:start + batch_size]
        column = pa.FixedSizeListArray.from_arrays(pa.array(chunk.reshape(-1)), 18)
        batches.append(pa.RecordBatch.from_arrays([column], schema=INPUT))
    return batches


def run_worker(step, batches):
    started = time.perf_counter()
    offset = 0
    for batch in batches:
        step.process(batch, offset)
        offset += batch.num_rows
    return time.perf_counter() - started


def run_direct(function, arrays):
    started = time.perf_counter()
    for data in arrays:
        function(data)
    return time.perf_counter() - started


def load_direct(path, standins):
    sys.path.append(standins)  # mac.types, as the worker provides it
    spec = importlib.util.spec_from_file_location("bench_step", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.process_data


def measure(step, function, batches, pairs):
    arrays = [{"tensor": b.column(0).flatten().to_numpy().reshape(-1, 18)} for b in batches]
    run_worker(step, batches), run_direct(function, arrays)  # warm-up
    a_times, b_times = [], []
    for i in range(pairs):
        order = (("A", "B") if i % 2 == 0 else ("B", "A"))
        for side in order:
            if side == "A":
                a_times.append(run_worker(step, batches))
            else:
                b_times.append(run_direct(function, arrays))
    return a_times, b_times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-sizes", default="100,1000,10000")
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args(argv)

    from orchzip.runtime.model_frameworks import check_upload
    from orchzip_shim.model_workers import WorkerStep, worker_dir

    folder = tempfile.mkdtemp(prefix="orchzip-bench-step-")
    path = os.path.join(folder, "step.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(textwrap.dedent(STEP))
    fields = check_upload("bench-step", "python", path, input_schema=INPUT, output_schema=OUTPUT)
    function = load_direct(path, os.path.join(worker_dir(), "standins"))
    print(f"python_step.py --rows {args.rows} --pairs {args.pairs}; worker python {fields['python']}")
    for size in [int(s) for s in args.batch_sizes.split(",")]:
        batches = make_batches(args.rows, size)
        with WorkerStep({"name": "bench-step", "path": path, **fields}) as step:
            a_times, b_times = measure(step, function, batches, args.pairs)
        report(size, len(batches), args.rows, a_times, b_times)


def report(size, count, rows, a_times, b_times):
    a_med, b_med = statistics.median(a_times), statistics.median(b_times)
    over = a_med - b_med
    print(f"batches of {size:>6} rows ({count} batches)")
    print(f"  (A) WorkerStep.process       min {min(a_times):8.4f} s  median {a_med:8.4f} s  "
          f"({rows / a_med:>12,.0f} rows/s)")
    print(f"  (B) process_data directly    min {min(b_times):8.4f} s  median {b_med:8.4f} s  "
          f"({rows / b_med:>12,.0f} rows/s)")
    print(f"  overhead at the median: {over / rows * 1e6:8.3f} us per row, {over / count * 1e3:8.3f} ms per batch "
          f"(A / B = {a_med / b_med:.1f})")


if __name__ == "__main__":
    main()
