"""The scheduler for real: `orchzip schedule`, `orchzip scheduler` and `orchzip tasks` in child
processes, on a seconds schedule. Every wait has a deadline; every process is killed at teardown."""

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import psutil
import pytest

from orchzip.runtime.scheduler.clock import from_iso
from orchzip.runtime.scheduler.loop import LOST_RUN
from orchzip.runtime.store import Store
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

QUICK = 'import datetime\nprint("fired at", datetime.datetime.now().isoformat())\n'

# Writes its pid and its child's pid to the pid_dir the task args name, then waits forever.
LONG = textwrap.dedent("""
    import json, os, subprocess, sys, time
    pid_dir = json.load(open("arguments.json"))["pid_dir"]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    run = os.environ["ORCHZIP_RUN_ID"]
    with open(os.path.join(pid_dir, run + ".json"), "w") as fh:
        json.dump({"main": os.getpid(), "child": child.pid}, fh)
    print("started", flush=True)
    time.sleep(300)
""")


def make_zip(tmp_path, name, main_py):
    path = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("main.py", main_py)
    return str(path)



def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Schedulers:
    """Starts `orchzip scheduler` processes; kills them and the runs they leave at teardown."""

    def __init__(self, state_dir, tmp_path):
        self.state_dir, self.tmp_path = state_dir, tmp_path
        self.procs = []

    def start(self, grace=2):
        log = open(self.tmp_path / f"scheduler-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchzip", "scheduler", "--grace", str(grace)],
            env=dict(os.environ, ORCHZIP_STATE_DIR=self.state_dir), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        store = Store(self.state_dir)
        try:
            wait_for(lambda: (store.get_lease() or {}).get("pid") == proc.pid or proc.poll() is not None,
                     20, "the scheduler to take its lease")
        finally:
            store.close()
        assert proc.poll() is None, self.log(proc)
        return proc

    def log(self, proc):
        return (self.tmp_path / f"scheduler-{self.procs.index(proc)}.log").read_text()

    def stop(self, proc, timeout=20, sig=signal.SIGTERM):
        proc.send_signal(sig)
        return proc.wait(timeout)

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        from orchzip.runtime.runner import kill_tree
        for path in self.tmp_path.glob("pids/*.json"):
            for pid in json.loads(path.read_text()).values():
                if alive(pid):
                    kill_tree(pid, 1)


@pytest.fixture
def schedulers(state_dir, tmp_path):
    s = Schedulers(state_dir, tmp_path)
    yield s
    s.cleanup()


@pytest.fixture
def store(state_dir):
    s = Store(state_dir)
    yield s
    s.close()


@pytest.fixture
def pid_dir(tmp_path):
    path = tmp_path / "pids"
    path.mkdir()
    return str(path)


def schedule(orchzip_cli, target, cron, *options):
    result = orchzip_cli("schedule", target, "--cron", cron, "--no-env", "--json", *options)
    assert result.code == 0, result
    return result.json()


def runs_of(store, task, status=None):
    return store.list_runs(task_id=task["id"], status=status)


def fire_accounting(store, task, step):
    """Every fire time from the first to the last handled one, each exactly once: run or skipped."""
    fires = [from_iso(r["fire_time"]) for r in runs_of(store, task) if r["attempt"] == 1]
    for skipped in store.list_skipped(task["id"]):
        first, last = from_iso(skipped["fire_time"]), from_iso(skipped["last_fire_time"])
        covered = [first + datetime.timedelta(seconds=step * i) for i in range(skipped["count"])]
        assert covered[-1] == last, skipped
        fires += covered
    fires.sort()
    assert len(fires) == len(set(fires)), "a fire was handled twice"
    assert all(b - a == datetime.timedelta(seconds=step) for a, b in zip(fires, fires[1:])), "a fire was lost"
    return fires


def test_a_seconds_schedule_starts_one_run_per_fire(orchzip_cli, tmp_path, store, schedulers):
    task = schedule(orchzip_cli, make_zip(tmp_path, "quick", QUICK), "*/2 * * * * *")
    assert task["status"] == "pending" and task["kind"] == "scheduled" and len(task["next_fire_times"]) == 3
    proc = schedulers.start()
    wait_for(lambda: len(runs_of(store, task, "success")) >= 3, 30, "three successful runs")
    assert schedulers.stop(proc) == 0
    runs = runs_of(store, task)
    assert {r["status"] for r in runs} == {"success"}
    fires = fire_accounting(store, task, 2)
    assert all(f.second % 2 == 0 and f.microsecond == 0 for f in fires)
    for run in runs:  # each run started at its fire time, not before
        assert from_iso(run["started_at"]) >= from_iso(run["fire_time"])
    assert store.get_task(task["id"])["status"] == "started"
    logs = orchzip_cli("tasks", "logs", task["id"][:8])
    assert logs.code == 0 and "fired at" in logs.out, logs
    listed = orchzip_cli("tasks", "runs", task["id"], "--json").json()
    assert [r["id"] for r in listed] == [r["id"] for r in runs]
    assert store.get_lease() is None  # released on a clean stop


def test_a_timeout_kills_the_whole_process_tree_and_records_timed_out(orchzip_cli, tmp_path, store, schedulers, pid_dir):
    task = schedule(orchzip_cli, make_zip(tmp_path, "long", LONG), "*/2 * * * * *", "--timeout", "1.5",
                    "--args", json.dumps({"pid_dir": pid_dir}))
    schedulers.start()
    run = wait_for(lambda: runs_of(store, task, "timed_out"), 30, "a timed-out run")[-1]
    assert run["error"] == "timed out after 1.5 s"
    pids = json.loads(open(os.path.join(pid_dir, run["id"] + ".json")).read())
    wait_for(lambda: not alive(pids["main"]) and not alive(pids["child"]), 10, "the run's processes to end")
    seconds = (from_iso(run["ended_at"]) - from_iso(run["started_at"])).total_seconds()
    assert seconds >= 1.5  # killed at its timeout, not before (timed_out says it did not run on)
    assert store.get_task(task["id"])["status"] == "started"  # a scheduled task goes on firing
    assert orchzip_cli("tasks", "kill", task["id"]).code == 0


def test_tasks_kill_stops_the_running_run_and_the_task_fires_no_more(orchzip_cli, tmp_path, store, schedulers, pid_dir):
    task = schedule(orchzip_cli, make_zip(tmp_path, "long", LONG), "*/2 * * * * *",
                    "--args", json.dumps({"pid_dir": pid_dir}))
    schedulers.start()
    run = wait_for(lambda: runs_of(store, task, "running"), 30, "a running run")[0]
    pid_file = os.path.join(pid_dir, run["id"] + ".json")
    wait_for(lambda: os.path.exists(pid_file), 20, "the task to start")
    killed = orchzip_cli("tasks", "kill", task["id"][:8])
    assert killed.code == 0 and "killed" in killed.out, killed
    assert store.get_run(run["id"])["status"] == "killed"
    pids = json.loads(open(pid_file).read())
    wait_for(lambda: not alive(pids["main"]) and not alive(pids["child"]), 10, "the run's processes to end")
    count = len(runs_of(store, task))
    time.sleep(2.5)
    assert len(runs_of(store, task)) == count
    status = orchzip_cli("tasks", "status", task["id"], "--json").json()
    assert status["status"] == "killed" and status["killed"] is True and status["next_fire_times"] == []


def test_pause_stops_fires_and_resume_starts_them_again(orchzip_cli, tmp_path, store, schedulers):
    task = schedule(orchzip_cli, make_zip(tmp_path, "quick", QUICK), "* * * * * *")
    schedulers.start()
    wait_for(lambda: len(runs_of(store, task)) >= 2, 30, "two runs")
    assert orchzip_cli("tasks", "pause", task["id"]).code == 0
    time.sleep(1.5)  # a run that started just before the pause may still end
    count = len(runs_of(store, task))
    listed = {t["id"]: t for t in orchzip_cli("tasks", "list", "--json").json()}
    assert listed[task["id"]]["next_fire"] == "paused"
    time.sleep(2.5)
    assert len(runs_of(store, task)) == count
    resumed_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    assert orchzip_cli("tasks", "resume", task["id"]).code == 0
    wait_for(lambda: len(runs_of(store, task)) > count, 15, "a run after resume")
    # No fire of the paused time is recorded, run or skipped. (On a busy machine the scheduler,
    # which looks at the store each second, may find two every-second fires due after the
    # resume and coalesce them: that skip is after the resume.)
    skipped = store.list_skipped(task["id"])
    assert all("overlap" in s["reason"] or datetime.datetime.fromisoformat(s["fire_time"]) >= resumed_at
               for s in skipped), skipped


def test_a_scheduler_killed_with_sigkill_restarts_without_lost_or_doubled_fires(
        orchzip_cli, tmp_path, store, schedulers, pid_dir):
    task = schedule(orchzip_cli, make_zip(tmp_path, "long", LONG), "*/2 * * * * *",
                    "--args", json.dumps({"pid_dir": pid_dir}))
    first = schedulers.start()
    lost = wait_for(lambda: runs_of(store, task, "running"), 30, "a running run")[0]
    pid_file = os.path.join(pid_dir, lost["id"] + ".json")
    wait_for(lambda: os.path.exists(pid_file), 20, "the task to start")
    second = orchzip_cli("scheduler", timeout=30)
    assert second.code == 2 and f"another scheduler (pid {first.pid}" in second.err, second
    assert len(second.err.strip().splitlines()) == 1

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    orphan = json.loads(open(pid_file).read())
    wait_for(lambda: not alive(orphan["main"]), 10, "the task to die with its scheduler")
    time.sleep(2.5)  # at least one fire passes while no scheduler runs

    restarted = schedulers.start()
    wait_for(lambda: store.get_run(lost["id"])["status"] == "failure", 20, "the lost run to be recorded")
    assert store.get_run(lost["id"])["error"] == f"{LOST_RUN}; no sink committed, so nothing was written"
    wait_for(lambda: not alive(orphan["main"]) and not alive(orphan["child"]), 10, "the orphan to be killed")
    new = wait_for(lambda: runs_of(store, task, "running"), 20, "a run after the restart")[0]
    assert new["id"] != lost["id"]

    assert schedulers.stop(restarted) == 0  # grace 2 s, then the run is killed
    final = store.get_run(new["id"])
    assert final["status"] == "killed" and "grace period of 2 s" in final["error"]
    fire_accounting(store, task, 2)
    assert store.get_lease() is None


@pytest.mark.parametrize("options, message", [
    (["--cron", "*/5 * *"], "invalid cron string '*/5 * *': it has 3 fields"),
    (["--cron", "99 * * * *"], "invalid cron string '99 * * * *'"),
    (["--cron", "*/5 * * * *", "--tz", "Atlantis/Capital"], "unknown time zone 'Atlantis/Capital'"),
    (["--cron", "*/5 * * * *", "--timeout", "-5"], "--timeout must be a positive number of seconds, not -5"),
    (["--cron", "*/5 * * * *", "--retries", "-1"], "--retries must be 0 or more"),
])
def test_bad_schedules_are_refused_with_one_clear_line(orchzip_cli, tmp_path, options, message):
    result = orchzip_cli("schedule", make_zip(tmp_path, "quick", QUICK), *options)
    assert result.code == 2, result
    assert result.err.strip().splitlines() == [f"orchzip: error: {result.err.strip()[len('orchzip: error: '):]}"]
    assert message in result.err
    assert orchzip_cli("tasks", "list", "--json").json() == []


def test_run_once_tasks_share_the_task_history(orchzip_cli, tmp_path):
    ran = orchzip_cli("run", make_zip(tmp_path, "quick", QUICK), "--no-env", "--json")
    assert ran.code == 0, ran
    (task,) = orchzip_cli("tasks", "list", "--json").json()
    # As on Wallaroo, a run-once task that has run stays `started`; its run has the outcome.
    assert task["kind"] == "run_once" and task["status"] == "started" and task["last_run"] == "success"
    (run,) = orchzip_cli("tasks", "runs", task["id"], "--json").json()
    assert run["id"] == ran.json()["id"]
    assert "fired at" in orchzip_cli("tasks", "logs", task["id"]).out
    listed = orchzip_cli("tasks", "list").out.splitlines()
    assert re.search(r"\bSTATUS\b.*\bLAST_RUN\b", listed[0]) and re.search(r"\bstarted\b.*\bsuccess\b", listed[-1]), listed
    killed = orchzip_cli("tasks", "kill", task["id"])  # nothing runs: killed at once
    assert killed.code == 0 and killed.out.strip() == f"task {task['id']} killed", killed
    refused = orchzip_cli("tasks", "kill", task["id"])
    assert refused.code == 2 and "already ended (killed)" in refused.err


def test_tasks_kill_stops_an_orchzip_run_in_another_process(orchzip_cli, tmp_path, state_dir, store, pid_dir):
    zip_path = make_zip(tmp_path, "long", LONG)
    run_proc = subprocess.Popen(
        [sys.executable, "-m", "orchzip", "run", zip_path, "--no-env", "--json", "--args", json.dumps({"pid_dir": pid_dir})],
        env=dict(os.environ, ORCHZIP_STATE_DIR=state_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        task = wait_for(lambda: [t for t in store.list_tasks() if t["status"] == "started"], 30, "the run to start")[0]
        wait_for(lambda: os.listdir(pid_dir), 20, "main.py to start")
        killed = orchzip_cli("tasks", "kill", task["id"])
        assert killed.code == 0, killed
        out, _ = run_proc.communicate(timeout=20)
        assert run_proc.returncode == 1 and json.loads(out)["status"] == "killed"
        assert store.get_task(task["id"])["status"] == "killed"
    finally:
        if run_proc.poll() is None:
            run_proc.kill()
            run_proc.wait(10)


def test_a_folder_is_built_into_a_zip_when_scheduled(orchzip_cli, tmp_path, store, schedulers):
    folder = tmp_path / "hello"
    folder.mkdir()
    (folder / "main.py").write_text(QUICK)
    task = schedule(orchzip_cli, str(folder), "*/2 * * * * *")
    assert task["name"] == "hello" and task["source"].endswith(".zip")
    (folder / "main.py").write_text("raise SystemExit('edited after scheduling')\n")  # the task keeps its zip
    proc = schedulers.start()
    wait_for(lambda: runs_of(store, task, "success"), 30, "a successful run")
    assert schedulers.stop(proc) == 0


def test_sigint_starts_no_new_run_and_lets_the_running_one_finish_within_the_grace(
        orchzip_cli, tmp_path, store, schedulers):
    slow = 'import time\ntime.sleep(1.5)\nprint("done", flush=True)\n'
    task = schedule(orchzip_cli, make_zip(tmp_path, "slow", slow), "* * * * * *", "--overlap", "allow")
    proc = schedulers.start(grace=10)
    wait_for(lambda: runs_of(store, task, "running"), 30, "a running run")
    signalled = datetime.datetime.now(datetime.timezone.utc)
    assert schedulers.stop(proc, sig=signal.SIGINT) == 0
    runs = runs_of(store, task)
    assert runs and {r["status"] for r in runs} == {"success"}  # every run it started could finish
    # no run started after the signal (a tick already under way may finish its fire)
    assert max(from_iso(r["created_at"]) for r in runs) < signalled + datetime.timedelta(seconds=0.5)
    assert "SIGINT: starting no new run" in schedulers.log(proc)
