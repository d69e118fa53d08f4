"""Benchmark: the Wallaroo tutorial's BigQuery round trip against orchzip's, on bqemulator.

    python bench/bigquery_roundtrip.py                 # 100k rows
    python bench/bigquery_roundtrip.py --rows 20000 --no-env

Starts bqemulator on loopback (tests/support/bq.py), loads N rows of house inputs into
``bench.houses`` (``tensor ARRAY<FLOAT64>``), then runs each way in its own child process:

(a) the tutorial's way: ``client.query(...).to_dataframe()`` -> onnxruntime on the DataFrame ->
    ``client.insert_rows_from_dataframe()`` (streaming inserts, 500 rows a request);
(b) ``orchzip run orchestrations/houseprice_bigquery`` (by default in the task environment its
    requirements.txt gives, with the Storage Read API; ``--no-env`` runs it in this venv, where
    reads use REST pages).

Prints rows/s (wall clock of the child, end to end) and peak RSS (the largest process of the
child's tree) of each, and the ratio b/a. Target: b >= 10x a at 100k rows.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # tests.support.bq starts the emulator
DEFAULT_MODEL = os.path.join(os.path.dirname(REPO), "shared", "wallaroo-tutorial-data", "rf_model.onnx")
DATASET = "bench"


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


def count(emulator, table):
    client = emulator.client()
    try:
        return client.get_table(f"{emulator.project}.{DATASET}.{table}").num_rows
    finally:
        client.close()


def run_child(argv):
    """Run ``argv`` to the end: (seconds, stdout, rusage of it and the descendants it waited for)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)  # ru_maxrss: the largest process of the tree
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        for line in stdout.splitlines():  # orchzip run --json names the run's log
            if '"log_path"' in line:
                stderr += "\n" + open(json.loads("{" + line.strip().rstrip(",") + "}")["log_path"]).read()[-3000:]
        sys.exit(f"{' '.join(argv[:5])} ... failed:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return seconds, stdout, usage


# What the tutorial's orchestration installs (its requirements.txt), plus the model runtime.
TUTORIAL_PACKAGES = ["google-cloud-bigquery>=3.10,<4", "google-auth", "db-dtypes", "pandas", "pyarrow",
                     "numpy", "onnxruntime"]


def tutorial_python():
    """(a) runs in an environment like the tutorial's task image, without bigquery-storage."""
    from orchzip.runtime.environments import find_task_python
    from tests.support.bq import cached_venv

    interpreter = find_task_python()[0]  # Python 3.10, as in Wallaroo's task image
    return cached_venv("bench-bigquery-tutorial", TUTORIAL_PACKAGES, interpreter)


def tutorial_child(rest_url, project, model, suffix):
    """(a), in a child process: the tutorial's calls, one after the other."""
    import datetime

    import onnxruntime as ort
    from google.api_core.client_options import ClientOptions
    from google.api_core.retry import Retry
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    started = time.perf_counter()
    client = bigquery.Client(project=project, credentials=AnonymousCredentials(),
                             client_options=ClientOptions(api_endpoint=rest_url))
    frame = client.query(f"SELECT tensor FROM {project}.{DATASET}.houses{suffix}").to_dataframe(create_bqstorage_client=False)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = np.array(frame["tensor"].tolist(), dtype=np.float32)
    predictions = session.run(None, {session.get_inputs()[0].name: x})[0]
    frame = frame.rename(columns={"tensor": "in_tensor"})
    frame.insert(0, "time", datetime.datetime.now())
    frame["out_variable"] = [list(map(float, p)) for p in predictions]
    frame["check_failures"] = 0
    table = client.get_table(f"{project}.{DATASET}.tutorial_results{suffix}")
    # The client's default retry waits up to 600 s on a failing insertAll: keep it short.
    errors = client.insert_rows_from_dataframe(table, frame, retry=Retry(timeout=60))
    if any(errors):
        sys.exit(f"insert errors: {errors[:3]}")
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": len(frame)}))


def create_tutorial_output(emulator, table):
    from google.cloud import bigquery

    client = emulator.client()
    schema = [bigquery.SchemaField("time", "DATETIME"), bigquery.SchemaField("in_tensor", "FLOAT64", mode="REPEATED"),
              bigquery.SchemaField("out_variable", "FLOAT64", mode="REPEATED"),
              bigquery.SchemaField("check_failures", "INT64")]
    client.create_table(bigquery.Table(f"{emulator.project}.{DATASET}.{table}", schema=schema), exists_ok=True)
    client.close()


def setup_state(state_dir, emulator, model):
    from orchzip.runtime.store import Store

    store = Store(state_dir)
    for name, table in (("houseprice_bq_inputs", "houses"), ("houseprice_bq_results", "orchzip_results"),
                        ("houseprice_bq_warmup", "warmup_results")):
        details = emulator.details(DATASET, table, grpc_endpoint=emulator.grpc_endpoint)
        store.create_connection(name, "BIGQUERY", details)
    store.create_connection("houseprice_bq_warmup_inputs", "BIGQUERY",
                            emulator.details(DATASET, "houses_warmup", grpc_endpoint=emulator.grpc_endpoint))
    store.create_pipeline("houseprice", model)
    store.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--no-env", action="store_true", help="run (b) in this venv (REST reads)")
    parser.add_argument("--tutorial-child", nargs=3, metavar=("REST_URL", "PROJECT", "SUFFIX"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.tutorial_child:
        rest_url, project, suffix = opts.tutorial_child
        return tutorial_child(rest_url, project, opts.model, suffix[1:])

    from tests.support.bq import running_emulator

    with tempfile.TemporaryDirectory(prefix="orchzip-bench-bq-") as tmp, running_emulator(tmp) as emulator:
        started = time.perf_counter()
        load_inputs(emulator, opts.rows)
        print(f"loaded {opts.rows:,} rows of inputs into the emulator in {time.perf_counter() - started:.1f} s")
        # Warm-up runs on 100 rows first, so neither way pays for the emulator's (or the task
        # environment's) first use of a code path.
        load_inputs(emulator, 100, table="houses_warmup")
        for table in ("tutorial_results", "tutorial_results_warmup"):
            create_tutorial_output(emulator, table)

        def tutorial(suffix):
            return run_child([tutorial_python(), __file__, "--model", opts.model, "--tutorial-child",
                              emulator.rest_url, emulator.project, f"s{suffix}"])

        state_dir = os.path.join(tmp, "state")
        setup_state(state_dir, emulator, opts.model)
        command = [sys.executable, "-m", "orchzip", "--state-dir", state_dir, "run",
                   os.path.join(REPO, "orchestrations", "houseprice_bigquery"),
                   "--arg", f"batch_size={opts.batch_size}", "--json"] + (["--no-env"] if opts.no_env else [])

        tutorial("_warmup")
        run_child(command + ["--arg", "input_connection=houseprice_bq_warmup_inputs",
                             "--arg", "output_connection=houseprice_bq_warmup"])
        a_seconds, a_out, a_usage = tutorial("")
        assert count(emulator, "tutorial_results") == opts.rows
        b_seconds, b_out, b_usage = run_child(command)
        run = json.loads(b_out)
        assert count(emulator, "orchzip_results") == opts.rows, run

    a_rate, b_rate = opts.rows / a_seconds, opts.rows / b_seconds
    a_inner = json.loads(a_out.strip().splitlines()[-1])["seconds"]
    print(f"rows: {opts.rows:,}  batch size: {opts.batch_size:,}  model: {os.path.basename(opts.model)}")
    print(f"(a) tutorial (to_dataframe, insert_rows_from_dataframe): {a_seconds:7.2f} s {a_rate:10,.0f} rows/s"
          f"  peak RSS {a_usage.ru_maxrss / 1024:6,.0f} MiB  (its calls alone: {a_inner:.2f} s)")
    print(f"(b) orchzip run houseprice_bigquery ({'this venv, REST reads' if opts.no_env else 'task env, Storage Read'}):"
          f" {b_seconds:7.2f} s {b_rate:10,.0f} rows/s  peak RSS {b_usage.ru_maxrss / 1024:6,.0f} MiB"
          f"  (inside the task: {run['seconds']:.2f} s)")
    print(f"ratio b/a: {b_rate / a_rate:.1f}x  (target >= 10x)")


if __name__ == "__main__":
    main()
