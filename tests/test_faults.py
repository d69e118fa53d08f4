"""Fault injection: a run's recorded status always matches what its sink did.

success <=> the output committed; any other status <=> the output is untouched. Kills land
on the task child, on `orchzip run`, on the scheduler and on `orchzip serve`, at
deterministic points of the commit (the shim's ``ORCHZIP_FAULT`` hook: ``prepared``,
``swapped``, ``committed``, ``recorded``; ``kill`` or ``pause``) and at a few seeded random
times, over DuckDB and FILE sinks. After each, a retry with the same idempotency key
(``run_id`` arg) must leave exactly one copy of the rows, and nothing may be left behind: no
temporary files, no task context with secrets, no task process.
"""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import duckdb
import psutil
import pyarrow.parquet as pq
import pytest

from conftest import RF_MODEL, XTEST_1K
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(240)

ROWS = 1000  # rows of XTEST_1K, written once per idempotency key

WRITER = textwrap.dedent("""
    import os, time
    import orchzip_shim

    task = orchzip_shim.current_task()
    once = task.args.get("fault_once")
    if once:  # inject the fault into the first run only (a marker file says it happened)
        if os.path.exists(once):
            os.environ.pop("ORCHZIP_FAULT", None)
        else:
            open(once, "w").close()
    options = {"create": True} if task.args.get("create") else {}
    sink = task.connection(task.args["output"]).sink(mode="append", rename=lambda c: c.replace(".", "_"), **options)
    hang = task.args.get("hang_after_batch")

    def after(stats):
        if hang and stats.batches == hang:
            print("hanging", flush=True)
            time.sleep(300)

    stats = orchzip_shim.run(task.connection("inputs").source(), task.pipeline("model"), sink,
                             batch_size=250, on_batch=after)
    print(stats.summary(), flush=True)
""")


@pytest.fixture
def setup(state_dir, tmp_path):
    """Connections ``inputs`` (the tutorial's 1k rows), ``duck`` and ``file`` outputs; a writer zip.

    Made in-process (the CLI's own commands are tested elsewhere): each test's time goes to faults.
    """
    from orchzip.builder import build
    from orchzip.runtime.store import Store

    out = tmp_path / "out"
    out.mkdir()
    store = Store(state_dir)
    store.create_connection("inputs", "FILE", {"path": XTEST_1K})
    store.create_connection("duck", "DUCKDB", {"path": str(out / "results.duckdb"), "table": "results"})
    store.create_connection("file", "FILE", {"path": str(out / "results.parquet")})
    store.create_pipeline("model", RF_MODEL)
    store.close()
    folder = tmp_path / "writer"
    folder.mkdir()
    (folder / "main.py").write_text(WRITER)
    return {"out": out, "zip": build(str(folder), str(tmp_path / "dist")).zip_path}


def output_rows(setup, sink):
    if sink == "bq":
        from tests.test_bigquery_connector import table_rows
        emulator, dataset = setup["bq"]
        try:
            return table_rows(emulator, dataset, "results")[0].num_rows
        except Exception as err:  # noqa: BLE001 - no table yet: nothing written
            if "Not found" in str(err) or "NotFound" in type(err).__name__:
                return 0
            raise
    if sink == "duck":
        path = str(setup["out"] / "results.duckdb")
        if not os.path.exists(path):
            return 0
        with duckdb.connect(path, read_only=True) as db:
            if not db.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'results'").fetchall():
                return 0
            return db.execute("SELECT count(*) FROM results").fetchone()[0]
    path = setup["out"] / "results.parquet"
    return pq.read_metadata(path).num_rows if path.exists() else 0


def assert_nothing_left_behind(setup, state_dir):
    assert glob.glob(str(setup["out"] / ".*.tmp")) == [], "temporary files left beside the output"
    assert glob.glob(os.path.join(state_dir, "runs", "*", "context.json")) == [], "a task context was left"
    for proc in psutil.process_iter(["pid"]):
        try:
            run_id = proc.environ().get("ORCHZIP_RUN_ID")
        except psutil.Error:
            continue
        if run_id and os.path.isdir(os.path.join(state_dir, "runs", run_id)):
            raise AssertionError(f"the task process {proc.pid} of run {run_id} still runs")


def assert_truthful(run, rows_before, rows_after, committed_before=False):
    """The invariant, for one run of a key: success iff the key's rows are in the output."""
    if run["status"] == "success":
        assert rows_after == (rows_before if committed_before else rows_before + ROWS), run
    else:
        assert rows_after == rows_before, run


def start_cli(state_dir, *argv, env=None):
    return subprocess.Popen([sys.executable, "-m", "orchzip", "--state-dir", state_dir, *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})), start_new_session=True)



def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def latest_run(orchzip_cli):
    runs = orchzip_cli("runs", "list", "--json").json()
    return runs[0] if runs else None


def paused_run(orchzip_cli, point):
    """The newest run once its task says it paused at ``point`` (the fault hook's line)."""
    def check():
        run = latest_run(orchzip_cli)
        if run and run.get("log_path") and os.path.exists(run["log_path"]):
            if f"paused at {point}" in open(run["log_path"], encoding="utf-8", errors="replace").read():
                return run
        return None
    return wait_for(check, 60, f"the task to pause at {point}")


def run_args(setup, sink, key, *extra):
    return ["run", setup["zip"], "--no-env", "--json", "--arg", f"output={sink}", "--arg", f"run_id={key}", *extra]


def retry_writes_once(orchzip_cli, setup, sink, key, first):
    """Retry ``key``: success, and the output holds the key's rows exactly once."""
    before = output_rows(setup, sink)
    result = orchzip_cli(*run_args(setup, sink, key))
    assert result.code == 0, result
    retry = result.json()
    assert retry["status"] == "success" and retry["idempotency_key"] == key
    if first["status"] == "success":
        assert output_rows(setup, sink) == before == ROWS
        assert f"already committed by run {first['id']}" in retry["note"], retry
    else:
        assert output_rows(setup, sink) == before + ROWS == ROWS
    return retry


POINTS = [("duck", "prepared"), ("duck", "committed"), ("duck", "recorded"),
          ("file", "prepared"), ("file", "swapped"), ("file", "committed"), ("file", "recorded")]


@pytest.mark.parametrize("sink, point", POINTS)
def test_a_task_killed_at_each_point_of_its_commit_is_recorded_as_its_output_says(
        orchzip_cli, setup, state_dir, sink, point):
    key = f"kill-{sink}-{point}"
    result = orchzip_cli(*run_args(setup, sink, key), env={"ORCHZIP_FAULT": f"{point}:kill"})
    first = result.json()
    rows = output_rows(setup, sink)
    assert_truthful(first, 0, rows)
    assert first["status"] == ("failure" if point == "prepared" else "success"), first
    assert (result.code == 0) == (first["status"] == "success")
    if first["status"] == "success":
        assert "committed before the run ended" in first["note"]
    assert_nothing_left_behind(setup, state_dir)
    retry_writes_once(orchzip_cli, setup, sink, key, first)
    assert_nothing_left_behind(setup, state_dir)


@pytest.mark.parametrize("sink, point", [("duck", "prepared"), ("duck", "committed"), ("file", "swapped"),
                                         ("file", "recorded")])
def test_orchzip_run_killed_outright_takes_its_task_along_and_the_record_follows_the_output(
        orchzip_cli, setup, state_dir, sink, point):
    key = f"sigkill-{sink}-{point}"
    cli = start_cli(state_dir, *run_args(setup, sink, key), env={"ORCHZIP_FAULT": f"{point}:pause"})
    try:
        run = paused_run(orchzip_cli, point)
        cli.send_signal(signal.SIGKILL)
        cli.wait(30)
        wait_for(lambda: gone(run["pid"]), 30, "the task to die with its orchzip run")
        first = orchzip_cli("runs", "show", run["id"], "--json").json()  # settles the lost run
    finally:
        cli.kill()
        cli.wait(30)
    assert first["status"] == ("failure" if point == "prepared" else "success"), first
    assert_truthful(first, 0, output_rows(setup, sink))
    if first["status"] != "success":
        assert "nothing was written" in first["error"]
    assert_nothing_left_behind(setup, state_dir)
    retry_writes_once(orchzip_cli, setup, sink, key, first)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("sink", ["duck", "file"])
def test_sigterm_and_sighup_of_orchzip_run_act_as_ctrl_c(orchzip_cli, setup, state_dir, sink, sig):
    cli = start_cli(state_dir, *run_args(setup, sink, f"{sig.name}-{sink}", "--arg", "hang_after_batch=2"))
    try:
        run = wait_for(lambda: (lambda r: r if r and r.get("log_path") and os.path.exists(r["log_path"])
                                and "hanging" in open(r["log_path"]).read() else None)(latest_run(orchzip_cli)),
                       60, "the task to hang after two batches")
        cli.send_signal(sig)
        out, err = cli.communicate(timeout=60)
    finally:
        cli.kill()
        cli.wait(30)
    assert cli.returncode != 0
    final = orchzip_cli("runs", "show", run["id"], "--json").json()
    assert final["status"] == "killed" and sig.name in final["error"], final
    assert gone(run["pid"])
    assert output_rows(setup, sink) == 0
    assert_nothing_left_behind(setup, state_dir)


@pytest.mark.parametrize("sink, point", [("duck", "recorded"), ("file", "committed")])
def test_a_timeout_that_lands_after_the_commit_records_success(orchzip_cli, setup, state_dir, sink, point):
    # The timeout is long enough for the task to reach the pause under any load; it then fires.
    result = orchzip_cli(*run_args(setup, sink, f"timeout-{sink}", "--timeout", "15"),
                         env={"ORCHZIP_FAULT": f"{point}:pause"})
    run = result.json()
    assert run["status"] == "success" and "timed_out" in run["note"], run
    assert output_rows(setup, sink) == ROWS
    assert_nothing_left_behind(setup, state_dir)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_orchzip_run_killed_at_random_times_never_lies_and_a_retry_writes_once(orchzip_cli, setup, state_dir, seed):
    rng = random.Random(seed)
    sink = rng.choice(["duck", "file"])
    key = f"random-{seed}"
    cli = start_cli(state_dir, *run_args(setup, sink, key))
    try:
        wait_for(lambda: (latest_run(orchzip_cli) or {}).get("pid"), 60, "the task to start")
        time.sleep(rng.uniform(0.0, 2.5))
        cli.send_signal(signal.SIGKILL)
        cli.wait(30)
    finally:
        cli.kill()
        cli.wait(30)
    run = latest_run(orchzip_cli)
    wait_for(lambda: gone(run["pid"]), 30, "the task to die with its orchzip run")
    first = orchzip_cli("runs", "show", run["id"], "--json").json()
    assert first["status"] != "running"
    assert_truthful(first, 0, output_rows(setup, sink))
    assert_nothing_left_behind(setup, state_dir)
    retry_writes_once(orchzip_cli, setup, sink, key, first)


def test_a_file_output_keeps_its_mode_and_leftovers_of_dead_runs_are_removed(orchzip_cli, setup, state_dir):
    path = setup["out"] / "results.parquet"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    path.unlink()
    first = orchzip_cli(*run_args(setup, "file", "mode-1")).json()
    assert first["status"] == "success"
    os.chmod(path, 0o640)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = setup["out"] / f".results.parquet.{int(dead.stdout)}.deadbeef.tmp"
    leftover.write_bytes(b"x" * 1000)
    second = orchzip_cli(*run_args(setup, "file", "mode-2")).json()
    assert second["status"] == "success"
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert not leftover.exists()
    assert output_rows(setup, "file") == 2 * ROWS


# -- the scheduler and the server, killed outright while a task is at a point of its commit --

def start_daemon(state_dir, tmp_path, name, *argv, env=None):
    log = open(tmp_path / f"{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "orchzip", "--state-dir", state_dir, *argv],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, **(env or {})), start_new_session=True)
    log.close()
    return proc


def stop_daemon(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


def ledger_keys(setup):
    with duckdb.connect(str(setup["out"] / "results.duckdb"), read_only=True) as db:
        return sorted(r[0] for r in db.execute("SELECT key FROM __orchzip_ledger").fetchall())


@pytest.mark.parametrize("point", ["prepared", "committed"])
def test_a_scheduler_killed_outright_settles_its_runs_from_their_commits_and_retries_exactly_once(
        orchzip_cli, setup, state_dir, tmp_path, point):
    from orchzip.runtime.store import Store

    marker = str(tmp_path / "faulted")
    # Fires 30 s apart: the retry (1 s after the restart) comes before the next fire, which a
    # retry must (a retry due after the next fire is dropped).
    scheduled = orchzip_cli("schedule", setup["zip"], "--cron", "*/30 * * * * *", "--no-env", "--retries", "1",
                            "--retry-backoff", "1", "--misfire-grace", "0", "--json",
                            "--args", json.dumps({"output": "duck", "fault_once": marker}))
    assert scheduled.code == 0, scheduled
    task = scheduled.json()
    fault = {"ORCHZIP_FAULT": f"{point}:pause"}
    first = start_daemon(state_dir, tmp_path, "scheduler-1", "scheduler", "--grace", "2", env=fault)
    second = None
    store = Store(state_dir)
    try:
        lost = paused_run(orchzip_cli, point)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        wait_for(lambda: gone(lost["pid"]), 30, "the task to die with its scheduler")
        second = start_daemon(state_dir, tmp_path, "scheduler-2", "scheduler", "--grace", "2", env=fault)
        settled = wait_for(lambda: (lambda r: r if r["status"] != "running" else None)(store.get_run(lost["id"])),
                           60, "the lost run to be settled")
        assert settled["status"] == ("failure" if point == "prepared" else "success"), settled
        if point == "prepared":  # retried for the same fire, with the same key
            retry = wait_for(lambda: [r for r in store.list_runs(task_id=task["id"])
                                      if r["fire_time"] == lost["fire_time"] and r["id"] != lost["id"]
                                      and r["status"] == "success"], 60, "the retry of the lost fire")[0]
            assert retry["idempotency_key"] == lost["idempotency_key"] and retry["attempt"] == 2
        assert orchzip_cli("tasks", "pause", task["id"]).code == 0
        wait_for(lambda: not store.list_runs(task_id=task["id"], status="running"), 60, "the runs to end")
    finally:
        for proc in (first, second):
            if proc is not None:
                stop_daemon(proc)
        store.close()
    runs = orchzip_cli("tasks", "runs", task["id"], "--limit", "100", "--json").json()
    committed = sorted({r["idempotency_key"] for r in runs if r["status"] == "success"})
    assert lost["idempotency_key"] in committed
    assert ledger_keys(setup) == committed  # each successful fire's key once, no other
    assert output_rows(setup, "duck") == ROWS * len(committed)  # and its rows once
    shown = orchzip_cli("tasks", "show", task["id"])
    assert task["source_sha"] in shown.out and task["source"].endswith(f"{task['source_sha']}.zip")
    assert_nothing_left_behind(setup, state_dir)


def test_orchzip_serve_killed_outright_keeps_the_records_true(setup, state_dir, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
    from serve_helpers import Server
    from orchzip.runtime.store import Store

    marker = str(tmp_path / "faulted")
    os.environ["ORCHZIP_FAULT"] = "committed:pause"  # read by the server started next, passed to its tasks
    try:
        server = Server(state_dir, tmp_path / "serve-1.log", "--no-env").start()
    finally:
        del os.environ["ORCHZIP_FAULT"]
    restarted = None
    store = Store(state_dir)
    try:
        workspace = server.post("/v1/api/workspaces/create", {"workspace_name": "w"}).json()["workspace_id"]
        with open(setup["zip"], "rb") as fh:
            files = {"file": ("writer.zip", fh.read(), "application/zip"),
                     "metadata": (None, json.dumps({"workspace_id": workspace}).encode(), "application/json")}
        orch_id = server.post("/v1/api/orchestration/upload", files=files).json()["id"]
        wait_for(lambda: server.post("/v1/api/orchestration/get_by_id", {"id": orch_id}).json()["status"] == "ready",
                 120, "the orchestration to be packaged")
        args = {"output": "file", "run_id": "serve-1", "fault_once": marker}
        body = {"orch_id": orch_id, "workspace_id": workspace, "json": args}
        task_id = server.post("/v1/api/task/run_once", body).json()["id"]
        run = wait_for(lambda: (lambda rs: rs[0] if rs and rs[0]["log_path"] and os.path.exists(rs[0]["log_path"])
                                and "paused at committed" in open(rs[0]["log_path"]).read() else None)(
                                    store.list_runs(task_id=task_id)), 60, "the task to pause after its commit")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
        wait_for(lambda: gone(run["pid"]), 30, "the task to die with the server")
        restarted = Server(state_dir, tmp_path / "serve-2.log", "--no-env").start()
        settled = store.get_run(run["id"])
        assert settled["status"] == "success" and output_rows(setup, "file") == ROWS, settled
        again = restarted.post("/v1/api/task/run_once", body).json()["id"]
        retry = wait_for(lambda: (lambda rs: rs[0] if rs and rs[0]["status"] != "running" else None)(
            store.list_runs(task_id=again)), 60, "the retry to end")
        assert retry["status"] == "success" and f"already committed by run {run['id']}" in retry["note"], retry
        shown = restarted.post("/v1/api/task/list_task_runs", {"task_id": again}).json()[0]
        assert shown["idempotency_key"] == "serve-1" and shown["note"] == retry["note"]
        assert output_rows(setup, "file") == ROWS
    finally:
        for srv in (server, restarted):
            if srv is not None and srv.process.poll() is None:
                srv.process.kill()
                srv.process.wait(30)
        store.close()
    assert_nothing_left_behind(setup, state_dir)


@pytest.mark.parametrize("point", ["prepared", "committed"])
def test_a_bigquery_load_killed_around_its_commit_is_settled_from_the_job_history(
        orchzip_cli, setup, state_dir, bq_emulator, point):
    from orchzip.runtime.store import Store

    dataset = "faults_" + os.urandom(4).hex()
    client = bq_emulator.client()
    client.create_dataset(dataset)
    client.close()
    store = Store(state_dir)
    store.create_connection("bq", "BIGQUERY", bq_emulator.details(dataset, "results"))
    store.close()
    setup["bq"] = (bq_emulator, dataset)
    key = f"bq-{point}"
    result = orchzip_cli(*run_args(setup, "bq", key, "--arg", "create=true"), env={"ORCHZIP_FAULT": f"{point}:kill"})
    first = result.json()
    assert first["status"] == ("failure" if point == "prepared" else "success"), first
    assert_truthful(first, 0, output_rows(setup, "bq"))
    retry = orchzip_cli(*run_args(setup, "bq", key, "--arg", "create=true")).json()
    assert retry["status"] == "success" and output_rows(setup, "bq") == ROWS, retry
    if point == "committed":
        assert f"already committed by run {first['id']}" in retry["note"]
    assert_nothing_left_behind(setup, state_dir)
