"""Benchmark: the Wallaroo tutorial's BigQuery round trip against orchzip's, on bqemulator.

    python bench/bigquery_roundtrip.py                 # 100k rows, 5 pairs
    python bench/bigquery_roundtrip.py --rows 20000 --pairs 3

Starts bqemulator on loopback (tests/support/bq.py) and loads N rows of house inputs into
``bench.houses`` (``tensor ARRAY<FLOAT64>``). Then, after one warm-up of each side on 100 rows,
alternates --pairs pairs (T, O then O, T, ...):

  T  the tutorial's way: ``client.query(...).to_dataframe()`` -> onnxruntime on the DataFrame ->
     ``client.insert_rows_from_dataframe()`` (streaming inserts, 500 rows a request);
  O  ``orchestrations/houseprice_bigquery`` (the Storage Read API, one load job at the end).

Both are started by ``orchzip run`` in the same task environment (T's orchestration has
houseprice_bigquery's requirements.txt), so they share the interpreter, the library versions
and the start-up costs. The rows each run added are counted with a ``SELECT COUNT(*)`` on the
emulator. Prints min and median of each side, O's speed against T in every pair (target: >= 10x
in each one), CPU seconds (orchzip run and its task), peak RSS and the load average.
"""

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)  # tests.support.bq starts the emulator
sys.path.insert(0, BENCH)
from embedded import orchzip_run, summary  # noqa: E402  (one way to time an `orchzip run`)

DEFAULT_MODEL = os.path.join(os.path.dirname(REPO), "shared", "wallaroo-tutorial-data", "rf_model.onnx")
HOUSEPRICE_BIGQUERY = os.path.join(REPO, "orchestrations", "houseprice_bigquery")
DATASET = "bench"

# T: the tutorial's calls, one after the other (the emulator's address comes in the task args;
# on Wallaroo the tutorial builds its client from the connection's service-account key).
# create_bqstorage_client=False: the emulator's Storage API is plain gRPC, which the tutorial's
# to_dataframe() cannot be pointed at; it would go to Google's public endpoint.
TUTORIAL_MAIN = '''
import datetime

import numpy as np
import onnxruntime as ort
import orchzip_shim
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

args = orchzip_shim.current_task().args
client = bigquery.Client(project=args["project"], credentials=AnonymousCredentials(),
                         client_options=ClientOptions(api_endpoint=args["rest_url"]))
frame = client.query(f"SELECT tensor FROM {{args['project']}}.{dataset}.{{args['input_table']}}").to_dataframe(
    create_bqstorage_client=False)
session = ort.InferenceSession({model!r}, providers=["CPUExecutionProvider"])
x = np.array(frame["tensor"].tolist(), dtype=np.float32)
predictions = session.run(None, {{session.get_inputs()[0].name: x}})[0]
frame = frame.rename(columns={{"tensor": "in_tensor"}})
frame.insert(0, "time", datetime.datetime.now())
frame["out_variable"] = [list(map(float, p)) for p in predictions]
frame["anomaly_count"] = 0
table = client.get_table(f"{{args['project']}}.{dataset}.{{args['output_table']}}")
# The client's default retry waits up to 600 s on a failing insertAll: keep it short.
errors = client.insert_rows_from_dataframe(table, frame, retry=Retry(timeout=60))
if any(errors):
    raise SystemExit(f"insert errors: {{errors[:3]}}")
print(f"rows written: {{len(frame)}}")
'''


def make_houses(rows):
    path = os.path.join(REPO, "examples", "houseprice", "make_example.py")
    spec = importlib.util.spec_from_file_location("make_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    values = module.make_houses(np.random.default_rng(7), rows).reshape(-1).astype(np.float64)
    offsets = pa.array(np.arange(0, rows * 18 + 1, 18, dtype=np.int32))
    return pa.table({"tensor": pa.ListArray.from_arrays(offsets, pa.array(values))})


def load_inputs(emulator, rows, table="houses"):
    import pyarrow.parquet as pq
    from google.cloud import bigquery

    client = emulator.client()
    client.create_dataset(DATASET, exists_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".parquet") as fh:
        pq.write_table(make_houses(rows), fh.name)
        config = bigquery.LoadJobConfig(source_format="PARQUET",
                                        schema=[bigquery.SchemaField("tensor", "FLOAT64", mode="REPEATED")])
        config.parquet_options = bigquery.ParquetOptions()
        config.parquet_options.enable_list_inference = True
        with open(fh.name, "rb") as data:
            client.load_table_from_file(data, f"{emulator.project}.{DATASET}.{table}", job_config=config).result()
    client.close()


def create_results_table(emulator, table):
    """The tutorial's output table, as its notebook creates it."""
    from google.cloud import bigquery

    client = emulator.client()
    schema = [bigquery.SchemaField("time", "DATETIME"), bigquery.SchemaField("in_tensor", "FLOAT64", mode="REPEATED"),
              bigquery.SchemaField("out_variable", "FLOAT64", mode="REPEATED"),
              bigquery.SchemaField("anomaly_count", "INT64")]
    client.create_table(bigquery.Table(f"{emulator.project}.{DATASET}.{table}", schema=schema), exists_ok=True)
    client.close()


def count_rows(emulator, table):
    """Rows in ``table``, by a query (not the table's metadata)."""
    client = emulator.client()
    try:
        return list(client.query(f"SELECT COUNT(*) FROM {emulator.project}.{DATASET}.{table}").result())[0][0]
    finally:
        client.close()


def setup_state(state_dir, emulator, model):
    from orchzip.runtime.store import Store

    store = Store(state_dir)
    for name, table in (("houseprice_bq_inputs", "houses"), ("houseprice_bq_results", "orchzip_results"),
                        ("houseprice_bq_warmup_inputs", "houses_warmup"), ("houseprice_bq_warmup", "orchzip_warmup")):
        store.create_connection(name, "BIGQUERY", emulator.details(DATASET, table, grpc_endpoint=emulator.grpc_endpoint))
    store.create_pipeline("houseprice", model)
    store.close()


def tutorial_orchestration(folder, model):
    os.makedirs(folder)
    with open(os.path.join(folder, "main.py"), "w") as fh:
        fh.write(TUTORIAL_MAIN.format(dataset=DATASET, model=os.path.abspath(model)))
    # houseprice_bigquery's requirements, plus db-dtypes, which to_dataframe() needs (the tutorial's
    # requirements.txt has it); the versions both sides share are checked after the warm-up.
    with open(os.path.join(HOUSEPRICE_BIGQUERY, "requirements.txt"), encoding="utf-8") as fh:
        requirements = fh.read()
    with open(os.path.join(folder, "requirements.txt"), "w", encoding="utf-8") as fh:
        fh.write(requirements.rstrip("\n") + "\ndb-dtypes\n")
    return folder


SHARED_PACKAGES = ("google-cloud-bigquery", "google-api-core", "google-auth", "pyarrow", "numpy", "pandas",
                   "onnxruntime", "grpcio", "protobuf")


def task_versions(run):
    """The task's Python and the versions of the packages both sides share, from its log."""
    import subprocess

    with open(run["log_path"], encoding="utf-8") as fh:
        python = next(line.split("task python ")[1].split()[0] for line in fh if "task python " in line)
    code = ("import sys, importlib.metadata as m; print(sys.version.split()[0], "
            f"*[n + '==' + m.version(n) for n in {SHARED_PACKAGES!r}])")
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=5, help="alternating pairs after the warm-up (default 5)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="rows per batch of O (default: houseprice_bigquery's own default)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    opts = parser.parse_args()

    from tests.support.bq import running_emulator

    with tempfile.TemporaryDirectory(prefix="orchzip-bench-bq-") as tmp, running_emulator(tmp) as emulator:
        started = time.perf_counter()
        load_inputs(emulator, opts.rows)
        load_inputs(emulator, 100, table="houses_warmup")
        for table in ("tutorial_results", "tutorial_warmup"):
            create_results_table(emulator, table)
        print(f"loaded {opts.rows:,} rows of inputs into the emulator in {time.perf_counter() - started:.1f} s")
        state_dir = os.path.join(tmp, "state")
        setup_state(state_dir, emulator, opts.model)
        tutorial = tutorial_orchestration(os.path.join(tmp, "tutorial"), opts.model)
        common = ["--arg", f"rest_url={emulator.rest_url}", "--arg", f"project={emulator.project}"]
        batch = ["--arg", f"batch_size={opts.batch_size}"] if opts.batch_size else []
        sides = {
            "T": (tutorial, common + ["--arg", "input_table=houses", "--arg", "output_table=tutorial_results"],
                  "tutorial_results"),
            "O": (HOUSEPRICE_BIGQUERY, batch, "orchzip_results"),
        }
        # Warm-up: the task environment built and cached, each code path of the emulator used once.
        warm_t = orchzip_run(state_dir, tutorial, common + ["--arg", "input_table=houses_warmup",
                                                            "--arg", "output_table=tutorial_warmup"])[3]
        warm_o = orchzip_run(state_dir, HOUSEPRICE_BIGQUERY, ["--arg", "input_connection=houseprice_bq_warmup_inputs",
                                                              "--arg", "output_connection=houseprice_bq_warmup"])[3]
        versions = task_versions(warm_o)
        if task_versions(warm_t) != versions:
            sys.exit(f"the two sides run different versions:\n T {task_versions(warm_t)}\n O {versions}")
        wall, cpu, peak, loads = {"T": [], "O": []}, {"T": [], "O": []}, {"T": [], "O": []}, []
        counts = {"T": 0, "O": 0}
        for pair in range(opts.pairs):
            for side in ("TO" if pair % 2 == 0 else "OT"):
                target, extra, table = sides[side]
                loads.append(os.getloadavg()[0])
                seconds, cpu_seconds, mib, _run = orchzip_run(state_dir, target, extra)
                total = count_rows(emulator, table)
                if total - counts[side] != opts.rows:
                    sys.exit(f"side {side} added {total - counts[side]:,} rows to {table}, not {opts.rows:,}")
                counts[side] = total
                wall[side].append(seconds)
                cpu[side].append(cpu_seconds)
                peak[side].append(mib)

    rows = opts.rows
    print(f"rows: {rows:,}  model: {os.path.basename(opts.model)}  pairs: {opts.pairs} after a warm-up  "
          f"O's batch size: {opts.batch_size or 'its default'}")
    print(f"both sides started by orchzip run, on Python {versions}")
    print(summary("(T) tutorial: to_dataframe, insert", wall["T"], rows))
    print(summary("(O) orchzip houseprice_bigquery", wall["O"], rows))
    per_pair = [t / o for t, o in zip(wall["T"], wall["O"])]
    print(f"O against T (T's time / O's) in each pair: {', '.join(f'{r:.1f}' for r in per_pair)}  "
          f"(min {min(per_pair):.1f}, median {statistics.median(per_pair):.1f}; target >= 10 in every pair)")
    print(f"CPU seconds per run, median: T {statistics.median(cpu['T']):.2f}, O {statistics.median(cpu['O']):.2f}"
          f"  (the emulator's own CPU is not counted)")
    print(f"peak RSS, orchzip run and its task: T {max(peak['T']):,.0f} MiB, O {max(peak['O']):,.0f} MiB")
    print(f"load average (1 min) as the measured runs started: min {min(loads):.1f}, median "
          f"{statistics.median(loads):.1f}, max {max(loads):.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
