"""End to end through the `orchzip` CLI: real builds, real child processes, real DuckDB files."""

import json
import os
import textwrap

import duckdb
import numpy as np
import onnxruntime as ort
import pytest

from conftest import REPO, RF_MODEL, XTEST_1K, reference_rows

HOUSEPRICE_LOCAL = os.path.join(REPO, "orchestrations", "houseprice_local")


@pytest.fixture
def tutorial_setup(orchzip_cli, tmp_path):
    """The tutorial's 1k rows as a FILE input, a DuckDB output, the reference model."""
    results_db = str(tmp_path / "results.duckdb")
    assert orchzip_cli("connections", "create", "houseprice_inputs", "--type", "FILE",
                       "--details", json.dumps({"path": XTEST_1K})).code == 0
    assert orchzip_cli("connections", "create", "houseprice_results", "--type", "DUCKDB",
                       "--details", json.dumps({"path": results_db, "table": "results"})).code == 0
    assert orchzip_cli("pipelines", "create", "houseprice", "--model", RF_MODEL).code == 0
    return results_db


def table_rows(db_path, table="results"):
    with duckdb.connect(db_path, read_only=True) as db:
        return db.execute(f"SELECT in_tensor, out_variable FROM {table} ORDER BY rowid").fetchall()


def seed_results(db_path):
    with duckdb.connect(db_path) as db:
        db.execute("CREATE TABLE results AS SELECT [1.0] AS in_tensor, [2.0] AS out_variable")


@pytest.mark.timeout(120)
def test_reference_model_through_orchzip_run_writes_the_models_predictions(orchzip_cli, tutorial_setup):
    result = orchzip_cli("run", HOUSEPRICE_LOCAL, "--arg", "batch_size=256", "--json")
    assert result.code == 0, result
    run = result.json()
    assert run["status"] == "success" and run["rows_written"] == 1000
    rows = table_rows(tutorial_setup)
    x = np.array([r["tensor"] for r in reference_rows()], dtype=np.float32)
    expected = ort.InferenceSession(RF_MODEL).run(None, {"float_input": x})[0].ravel()
    assert len(rows) == 1000
    np.testing.assert_allclose([r[1][0] for r in rows], expected, rtol=1e-6)
    assert [r[0] for r in rows[:3]] == [r["tensor"] for r in reference_rows()[:3]]
    logs = orchzip_cli("runs", "logs", run["id"][:8])
    assert "rows read: 1000" in logs.out


def slow_writer(tmp_path, behaviour):
    """An orchestration that writes some batches, then hangs or raises before committing."""
    folder = tmp_path / f"slow_{behaviour}"
    folder.mkdir()
    # The same requirements as houseprice_local, so both share one cached task environment.
    (folder / "requirements.txt").write_text(open(os.path.join(HOUSEPRICE_LOCAL, "requirements.txt")).read())
    (folder / "main.py").write_text(textwrap.dedent(f"""
        import os, subprocess, sys, time
        import orchzip_shim

        task = orchzip_shim.current_task()
        source = task.connection("houseprice_inputs").source()
        sink = task.connection("houseprice_results").sink(mode="overwrite", rename=lambda c: c.replace(".", "_"))
        pipeline = task.pipeline("houseprice")

        def after_batch(stats):
            if stats.batches == 2:
                print("two batches written", flush=True)
                if "{behaviour}" == "hang":
                    # A grandchild that would outlive a careless kill.
                    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
                    open("grandchild.pid", "w").write(str(child.pid))
                    time.sleep(300)
                raise RuntimeError("the task failed halfway")

        orchzip_shim.run(source, pipeline, sink, batch_size=100, on_batch=after_batch)
    """))
    return str(folder)


@pytest.mark.timeout(120)
def test_a_timed_out_run_is_recorded_and_leaves_the_output_unchanged(orchzip_cli, tutorial_setup, tmp_path):
    seed_results(tutorial_setup)
    result = orchzip_cli("run", slow_writer(tmp_path, "hang"), "--timeout", "4", "--json")
    assert result.code == 1, result
    run = result.json()
    assert run["status"] == "timed_out"
    assert table_rows(tutorial_setup) == [([1.0], [2.0])]
    grandchild = int(open(os.path.join(run["work_dir"], "grandchild.pid")).read())
    assert not _alive(grandchild), "the timeout must kill the whole process tree"
    listed = orchzip_cli("runs", "list", "--json").json()
    assert listed[0]["id"] == run["id"] and listed[0]["status"] == "timed_out"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie waiting for its reaper is dead too
        return fh.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.timeout(120)
def test_a_run_that_raises_halfway_fails_and_leaves_the_output_unchanged(orchzip_cli, tutorial_setup, tmp_path):
    seed_results(tutorial_setup)
    result = orchzip_cli("run", slow_writer(tmp_path, "raise"))
    assert result.code == 1
    assert "the task failed halfway" in result.err
    assert "two batches written" in result.out
    assert table_rows(tutorial_setup) == [([1.0], [2.0])]


# -- errors a user can cause: one line, non-zero exit, nothing written ---------------------

def assert_one_line_error(result, *fragments):
    assert result.code != 0, result
    errors = [line for line in result.err.splitlines() if line.startswith("orchzip: error:")]
    assert errors, result
    assert "Traceback" not in result.err, result
    for fragment in fragments:
        assert fragment in errors[-1], result


@pytest.mark.timeout(120)
def test_unknown_connection_lists_the_known_names(orchzip_cli, tutorial_setup):
    result = orchzip_cli("run", HOUSEPRICE_LOCAL, "--arg", "input_connection=nope")
    assert_one_line_error(result, "'nope'", "houseprice_inputs, houseprice_results")
    assert not os.path.exists(tutorial_setup)


@pytest.mark.timeout(120)
def test_unknown_pipeline_lists_the_known_names(orchzip_cli, tutorial_setup):
    result = orchzip_cli("run", HOUSEPRICE_LOCAL, "--arg", "pipeline=nope")
    assert_one_line_error(result, "'nope'", "known: houseprice")


@pytest.mark.timeout(120)
def test_a_tensor_of_the_wrong_width_names_the_row_and_the_width(orchzip_cli, tutorial_setup, tmp_path):
    rows = reference_rows()
    rows[611]["tensor"] = rows[611]["tensor"][:12]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rows))
    assert orchzip_cli("connections", "create", "bad_inputs", "--type", "FILE", "--details",
                       json.dumps({"path": str(bad)})).code == 0
    result = orchzip_cli("run", HOUSEPRICE_LOCAL, "--arg", "input_connection=bad_inputs")
    assert_one_line_error(result, "row 611", "has 12 values", "expects 18")
    assert not os.path.exists(tutorial_setup)


@pytest.mark.timeout(120)
def test_a_missing_model_file_is_named(orchzip_cli, tutorial_setup, tmp_path):
    model = tmp_path / "gone.onnx"
    model.write_bytes(open(RF_MODEL, "rb").read())
    assert orchzip_cli("pipelines", "create", "gone", "--model", str(model)).code == 0
    model.unlink()
    result = orchzip_cli("run", HOUSEPRICE_LOCAL, "--arg", "pipeline=gone")
    assert_one_line_error(result, "gone.onnx", "does not exist")
    assert_one_line_error(orchzip_cli("pipelines", "create", "p2", "--model", str(model)), "gone.onnx")


def test_invalid_args_json_is_refused_before_anything_runs(orchzip_cli, state_dir):
    assert_one_line_error(orchzip_cli("run", HOUSEPRICE_LOCAL, "--args", "{batch_size: 5"), "--args is not valid JSON")
    assert_one_line_error(orchzip_cli("run", HOUSEPRICE_LOCAL, "--args", "[1, 2]"), "must be a JSON object")
    assert orchzip_cli("runs", "list", "--json").json() == []


def test_a_folder_without_main_py_is_refused(orchzip_cli, tmp_path):
    folder = tmp_path / "empty_orch"
    folder.mkdir()
    (folder / "requirements.txt").write_text("")
    assert_one_line_error(orchzip_cli("run", str(folder)), "main.py")


@pytest.mark.timeout(60)
def test_an_unreadable_input_is_a_clear_error(orchzip_cli, tutorial_setup, tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    assert orchzip_cli("connections", "create", "broken", "--type", "FILE", "--details",
                       json.dumps({"path": str(broken)})).code == 0
    result = orchzip_cli("run", HOUSEPRICE_LOCAL, "--arg", "input_connection=broken")
    assert_one_line_error(result, "broken.parquet")
    assert not os.path.exists(tutorial_setup)


def test_connection_secrets_are_masked_and_the_store_is_owner_only(orchzip_cli, state_dir):
    details = {"private_key": "-----BEGIN PRIVATE KEY-----abc", "token": "${MY_TOKEN}", "dataset": "d"}
    assert orchzip_cli("connections", "create", "bq", "--type", "BIGQUERY", "--details", json.dumps(details)).code == 0
    shown = orchzip_cli("connections", "get", "bq", "--json").json()
    assert shown["details"] == {"private_key": "****", "token": "${MY_TOKEN}", "dataset": "d"}
    listed = orchzip_cli("connections", "list")
    assert "BEGIN PRIVATE KEY" not in listed.out
    assert os.stat(state_dir).st_mode & 0o077 == 0
    assert os.stat(os.path.join(state_dir, "state.db")).st_mode & 0o077 == 0
    assert_one_line_error(orchzip_cli("connections", "create", "bq", "--type", "FILE", "--details",
                                      '{"path": "out.parquet"}'), "already exists")


@pytest.mark.timeout(120)
def test_a_task_dies_with_its_killed_orchzip_run_and_the_run_is_recorded_failed(orchzip_cli, state_dir, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "sleeper"
    folder.mkdir()
    (folder / "main.py").write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n")
    cli = subprocess.Popen([sys.executable, "-m", "orchzip", "--state-dir", state_dir, "run", str(folder), "--no-env"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        runs = []
        while time.monotonic() < deadline and not (runs and runs[0]["pid"]):
            time.sleep(0.2)
            runs = orchzip_cli("runs", "list", "--json").json()
        assert runs and runs[0]["pid"], "the run never started"
        cli.send_signal(signal.SIGKILL)  # orchzip run dies without recording anything
        cli.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(runs[0]["pid"]):
            time.sleep(0.1)
        assert not _alive(runs[0]["pid"]), "the task must die with its orchzip run"
        run = orchzip_cli("runs", "show", runs[0]["id"], "--json").json()
        assert run["status"] == "failure" and "nothing was written" in run["error"]
        task = orchzip_cli("tasks", "status", run["task_id"], "--json").json()
        assert task["status"] == "started" and task["last_runs"][0]["status"] == "failure"  # as on Wallaroo
        assert not os.path.exists(os.path.join(os.path.dirname(run["work_dir"]), "context.json"))
    finally:
        cli.kill()
        cli.wait(timeout=30)


def duckdb_to_duckdb(orchzip_cli, tmp_path, rows):
    """Connections for houseprice_local with ``rows`` in a DuckDB table and results in the same file."""
    database = str(tmp_path / "houses.duckdb")
    with duckdb.connect(database) as db:
        db.execute("CREATE TABLE house_inputs (tensor DOUBLE[])")
        db.executemany("INSERT INTO house_inputs VALUES (?)", [[r["tensor"]] for r in rows])
    for name, table in (("houseprice_inputs", "house_inputs"), ("houseprice_results", "house_results")):
        assert orchzip_cli("connections", "create", name, "--type", "DUCKDB",
                           "--details", json.dumps({"path": database, "table": table})).code == 0
    assert orchzip_cli("pipelines", "create", "houseprice", "--model", RF_MODEL).code == 0
    return database


@pytest.mark.timeout(300)
def test_duckdb_to_duckdb_keeps_the_result_schema_and_values_and_imports_no_pandas(orchzip_cli, tmp_path):
    rows = reference_rows()
    database = duckdb_to_duckdb(orchzip_cli, tmp_path, rows)
    # houseprice_local's main.py, then what the task had imported by its end.
    folder = tmp_path / "houseprice_probe"
    folder.mkdir()
    (folder / "requirements.txt").write_text(open(os.path.join(HOUSEPRICE_LOCAL, "requirements.txt")).read())
    (folder / "main.py").write_text(open(os.path.join(HOUSEPRICE_LOCAL, "main.py")).read() + textwrap.dedent("""
        import sys
        print("IMPORTED", sorted(m for m in ("pandas", "pyarrow.dataset") if m in sys.modules))
    """))
    result = orchzip_cli("run", str(folder), "--arg", "batch_size=300", "--json", timeout=280)
    assert result.code == 0, result
    run = result.json()
    assert run["status"] == "success" and run["rows_written"] == len(rows)
    logs = orchzip_cli("runs", "logs", run["id"][:8]).out
    # pandas costs every run 0.25 s to import, and nothing on this path needs it.
    assert "IMPORTED []" in logs, logs
    with duckdb.connect(database, read_only=True) as db:
        schema = db.execute("SELECT column_name, column_type FROM (DESCRIBE house_results)").fetchall()
        written = db.execute("SELECT in_tensor, out_variable, anomaly_count, time FROM house_results ORDER BY rowid").fetchall()
    assert schema == [("time", "TIMESTAMP_MS"), ("in_tensor", "DOUBLE[]"), ("out_variable", "FLOAT[]"),
                      ("anomaly_count", "BIGINT")]
    x = np.array([r["tensor"] for r in rows], dtype=np.float32)
    expected = ort.InferenceSession(RF_MODEL).run(None, {"float_input": x})[0]
    assert [w[0] for w in written] == [r["tensor"] for r in rows]
    np.testing.assert_array_equal(np.array([w[1] for w in written], dtype=np.float32), expected)
    assert {w[2] for w in written} == {0}
    assert all(w[3] is not None for w in written)


@pytest.mark.timeout(120)
def test_the_task_ends_as_python_main_py_would_its_files_flushed_and_atexit_run(orchzip_cli, state_dir, tmp_path):
    # main.py runs as the module __main__ and the exit is shortened (task_bootstrap): a file
    # main.py left open is still flushed, atexit handlers and non-daemon threads still run.
    out = tmp_path / "out"
    out.mkdir()
    folder = tmp_path / "exits"
    folder.mkdir()
    (folder / "requirements.txt").write_text("")
    (folder / "main.py").write_text(textwrap.dedent(f"""\
        import atexit, threading, time
        OUT = {str(out)!r}
        left_open = open(OUT + "/left_open.txt", "w", buffering=1 << 20)
        left_open.write("left open\\n")

        def late():
            time.sleep(0.5)
            with open(OUT + "/thread.txt", "w") as fh:
                fh.write("thread\\n")

        threading.Thread(target=late).start()  # not a daemon: the exit waits for it
        atexit.register(lambda: open(OUT + "/atexit.txt", "w").write("atexit\\n"))
    """))
    result = orchzip_cli("run", str(folder), "--json")
    assert result.code == 0, result.err
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "left_open.txt": "left open\n", "atexit.txt": "atexit\n", "thread.txt": "thread\n"}


@pytest.mark.timeout(120)
def test_each_run_of_a_folder_runs_what_the_folder_holds_now(orchzip_cli, state_dir, tmp_path):
    # A folder's zip is reused while nothing in it changed (builder._reuse); an edit is always seen,
    # even one that keeps the file's size and modification time.
    folder = tmp_path / "edited"
    folder.mkdir()
    (folder / "requirements.txt").write_text("")
    main_py = folder / "main.py"
    said = []
    for word in ("first", "again", "other"):
        if word != "again":
            stamp = os.stat(main_py) if main_py.exists() else None
            main_py.write_text(f"print('{word}')\n")
            if stamp is not None:
                os.utime(main_py, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        result = orchzip_cli("run", str(folder), "--json")
        assert result.code == 0, result.err
        said.append(orchzip_cli("runs", "logs", result.json()["id"]).out)
    assert "first" in said[0] and "first" in said[1] and "other" in said[2] and "first" not in said[2]
