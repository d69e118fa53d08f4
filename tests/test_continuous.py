"""Run-continuously tasks: main.py restarted with backoff when it exits, crash_loop, kill."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

from orchzip.errors import ConfigError
from orchzip.runtime.continuous import RestartPolicy
from tests.support.waiting import wait_for


# -- the policy, pure ---------------------------------------------------------------------------
def test_the_backoff_doubles_with_each_quick_exit_up_to_its_cap():
    policy = RestartPolicy(backoff=1, max_backoff=10, stable_seconds=60, crash_loop_after=3)
    assert [policy.delay(n) for n in range(7)] == [1, 1, 2, 4, 8, 10, 10]


def test_quick_exits_make_a_crash_loop_and_a_stable_run_ends_it():
    policy = RestartPolicy(backoff=1, max_backoff=60, stable_seconds=30, crash_loop_after=3)
    quick = 0
    statuses = []
    for seconds_up in (1, 2, 0.5, 4, 29.9, 30, 1):
        quick = policy.quick_exits_after(quick, seconds_up)
        statuses.append((quick, policy.status(quick)))
    assert statuses == [(1, "started"), (2, "started"), (3, "crash_loop"), (4, "crash_loop"), (5, "crash_loop"),
                        (0, "started"), (1, "started")]


@pytest.mark.parametrize("fields, fragment", [
    ({"backoff": -1}, "--backoff must be 0 or more"),
    ({"backoff": 5, "max_backoff": 2}, "--max-backoff (2) must be at least --backoff (5)"),
    ({"crash_loop_after": 0}, "--crash-loop-after must be 1 or more"),
])
def test_a_bad_policy_is_refused(fields, fragment):
    with pytest.raises(ConfigError) as err:
        RestartPolicy(**fields)
    assert fragment in str(err.value)


# -- real runs ----------------------------------------------------------------------------------
def orchestration(tmp_path, name, code):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "main.py").write_text(textwrap.dedent(code))
    return str(folder)



class Supervisor:
    """`orchzip run --continuously` in a subprocess."""

    def __init__(self, state_dir, folder, *options):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchzip", "--state-dir", state_dir, "run", folder, "--no-env", "--continuously",
             "--json", *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def finish(self, timeout=60):
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)


@pytest.fixture
def supervisors():
    started = []

    def start(*argv):
        started.append(Supervisor(*argv))
        return started[-1]

    yield start
    for supervisor in started:
        supervisor.close()


def tasks(orchzip_cli):
    return orchzip_cli("tasks", "list", "--json").json()


def runs(orchzip_cli, task_id):
    return orchzip_cli("tasks", "runs", task_id, "--json", "--limit", "100").json()


@pytest.mark.timeout(180)
def test_a_main_py_that_keeps_exiting_is_restarted_then_crash_loops_until_killed(
        orchzip_cli, state_dir, tmp_path, supervisors):
    folder = orchestration(tmp_path, "quitter", """\
        import os
        print(f"up as {os.getpid()}")
    """)
    supervisor = supervisors(state_dir, folder, "--backoff", "0.05", "--max-backoff", "0.2",
                             "--stable-after", "60", "--crash-loop-after", "3")
    (task,) = wait_for(lambda: [t for t in tasks(orchzip_cli) if t["status"] == "crash_loop"], 90, "crash_loop")
    assert task["kind"] == "continuous"
    ran = runs(orchzip_cli, task["id"])
    assert len(ran) >= 3 and {r["status"] for r in ran} <= {"success", "running"}
    ended = sorted((r for r in ran if r["status"] == "success"), key=lambda r: r["attempt"])
    assert [r["attempt"] for r in ended] == list(range(1, len(ended) + 1))  # one start after another
    logs = orchzip_cli("runs", "logs", ended[0]["id"]).out.splitlines()
    assert logs[0] == "WALLAROO: Setting up task run..." and logs[-1] == "Task run complete. Status: success"
    assert any(line.startswith("up as ") for line in logs)

    killed = orchzip_cli("tasks", "kill", task["id"])
    assert killed.code == 0 and killed.out.strip() == f"task {task['id']} killed", killed
    code, out, err = supervisor.finish()
    assert code == 0, err
    final = json.loads(out)
    assert final["status"] == "killed" and final["runs"] == len(runs(orchzip_cli, task["id"]))
    assert "running" not in {r["status"] for r in runs(orchzip_cli, task["id"])}


@pytest.mark.timeout(180)
def test_a_service_that_recovers_leaves_the_crash_loop_and_is_killed_with_its_run(
        orchzip_cli, state_dir, tmp_path, supervisors):
    counter = tmp_path / "starts"
    folder = orchestration(tmp_path, "flaky", f"""\
        import time
        path = {str(counter)!r}
        try:
            starts = int(open(path).read())
        except FileNotFoundError:
            starts = 0
        open(path, "w").write(str(starts + 1))
        if starts < 3:
            raise RuntimeError(f"not ready yet ({{starts}})")
        while True:
            print("serving", flush=True)
            time.sleep(0.2)
    """)
    # A failing start takes well under 8 s even on a busy machine; the fourth stays up longer.
    supervisor = supervisors(state_dir, folder, "--backoff", "0.05", "--max-backoff", "0.2",
                             "--stable-after", "8", "--crash-loop-after", "3")
    (task,) = wait_for(lambda: [t for t in tasks(orchzip_cli) if t["status"] == "crash_loop"], 90, "crash_loop")
    ran = runs(orchzip_cli, task["id"])
    assert [r["status"] for r in sorted(ran, key=lambda r: r["attempt"])][:3] == ["failure"] * 3
    assert min(ran, key=lambda r: r["attempt"])["error"] == "RuntimeError: not ready yet (0)"
    # The fourth start stays up: once it has for --stable-after, the task is started again.
    wait_for(lambda: orchzip_cli("tasks", "status", task["id"], "--json").json()["status"] == "started", 60,
             "the task to leave crash_loop")
    live = orchzip_cli("runs", "logs", "--last").out.splitlines()
    assert "serving" in live and not any(line.startswith("Task run complete") for line in live)
    orchzip_cli("tasks", "kill", task["id"])
    code, out, _ = supervisor.finish()
    assert code == 0 and json.loads(out)["status"] == "killed"
    last = max(runs(orchzip_cli, task["id"]), key=lambda r: r["attempt"])
    assert last["attempt"] == 4 and last["status"] == "killed"
    assert orchzip_cli("runs", "logs", last["id"], "--lines", "1").out == "Task run complete. Status: killed\n"


@pytest.mark.parametrize("argv, fragment", [
    (["--continuously", "--timeout", "5"], "--timeout does not apply to --continuously"),
    (["--backoff", "2"], "--backoff applies to --continuously only"),
    (["--continuously", "--backoff", "-1"], "--backoff must be 0 or more seconds"),
])
def test_bad_continuous_options_are_one_line(orchzip_cli, tmp_path, argv, fragment):
    folder = orchestration(tmp_path, "hello", "print('hi')\n")
    refused = orchzip_cli("run", folder, "--no-env", *argv)
    assert refused.code == 2 and fragment in refused.err, refused
    assert "Traceback" not in refused.err and len(refused.err.strip().splitlines()) == 1
    assert orchzip_cli("tasks", "list", "--json").json() == []


# -- through orchzip serve ----------------------------------------------------------------------
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, texts  # noqa: E402

HELLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve", "hello")


def _ready_orchestration(server, tmp_path):
    from orchzip.builder import build
    zip_path = build(HELLO, str(tmp_path / "dist")).zip_path
    workspace_id = server.post("/v1/api/workspaces/create", {"workspace_name": "svc"}).json()["workspace_id"]
    with open(zip_path, "rb") as fh:
        files = [("file", ("hello.zip", fh.read(), "application/zip")),
                 ("metadata", (None, json.dumps({"workspace_id": workspace_id, "name": "hello"}).encode(),
                               "application/json"))]
    orch_id = server.post("/v1/api/orchestration/upload", files=files).json()["id"]
    wait_for(lambda: server.post("/v1/api/orchestration/get_by_id", {"id": orch_id}).json()["status"] == "ready",
             60, "packaging")
    return orch_id, workspace_id


@pytest.mark.timeout(240)
def test_run_continuously_over_the_api_restarts_survives_a_server_restart_and_is_killed(tmp_path):
    state = tmp_path / "state"
    server = Server(state, tmp_path / "serve.log", "--no-env").start()
    try:
        orch_id, workspace_id = _ready_orchestration(server, tmp_path)
        refused = server.post("/v1/api/task/run_continuously", {"orch_id": orch_id, "workspace_id": workspace_id,
                                                                "json": {}, "timeout": 5})
        assert refused.status_code == 422 and "timeout" in refused.json()["msg"]
        answer = server.post("/v1/api/task/run_continuously", {"orch_id": orch_id, "workspace_id": workspace_id,
                                                               "name": "svc", "json": {"ticks": 1, "tick_seconds": 0.01}})
        assert answer.status_code == 201, answer.text
        task_id = answer.json()["id"]

        def task():
            return server.post("/v1/api/task/get_by_id", {"id": task_id}).json()

        # main.py exits after its tick: it is started again (backoff 1 s, then 2 s).
        seen = wait_for(lambda: (t := task()) and len([r for r in t["last_runs"] if r["status"] == "success"]) >= 2 and t,
                        90, "two runs that ended")
        assert seen["run_type"] == "NetworkService" and seen["status"] in ("started", "crash_loop")
        assert seen["name"] == "svc" and seen["input_data"] == {"ticks": 1, "tick_seconds": 0.01}
        run_id = [r for r in seen["last_runs"] if r["status"] == "success"][0]["run_id"]
        lines = texts(server.post("/v1/api/task/get_logs_for_run", {"id": run_id}).json()["logs"])
        assert "tick 0" in lines and lines[-1] == "Task run complete. Status: success"

        server.stop()  # a server that stops leaves the task going: the next one takes it up
        server = Server(state, tmp_path / "serve2.log", "--no-env").start()
        before = len(seen["last_runs"])
        runs_now = lambda: server.post("/v1/api/task/list_task_runs", {"task_id": task_id}).json()  # noqa: E731
        wait_for(lambda: len(runs_now()) > before + 1, 90, "runs after the server restart")
        assert task()["status"] in ("started", "crash_loop")

        killed = server.post("/v1/api/task/kill", {"id": task_id})
        assert killed.status_code == 202
        final = wait_for(lambda: (t := task())["status"] == "killed" and t, 60, "the task killed")
        assert final["killed"] is True
        count = len(runs_now())
        assert "running" not in {r["status"] for r in runs_now()}
        time.sleep(2.5)  # longer than the backoff: a task still going would have started a run
        assert len(runs_now()) == count
    finally:
        server.stop()


def serving(orchzip_cli, state_dir, tmp_path, supervisors):
    """`orchzip run --continuously` of a main.py that serves until stopped, once it serves:
    ``(supervisor, task)``."""
    folder = orchestration(tmp_path, "service", """\
        import time
        while True:
            print("serving", flush=True)
            time.sleep(0.2)
    """)
    supervisor = supervisors(state_dir, folder)
    (task,) = wait_for(lambda: [t for t in tasks(orchzip_cli) if t["last_run"] == "running"], 60, "the service")
    wait_for(lambda: "serving" in orchzip_cli("runs", "logs", "--last").out, 60, "main.py to serve")
    return supervisor, task


@pytest.mark.timeout(180)
def test_a_continuous_task_whose_orchzip_run_was_killed_outright_ends_failed(orchzip_cli, state_dir, tmp_path,
                                                                               supervisors):
    import signal
    supervisor, task = serving(orchzip_cli, state_dir, tmp_path, supervisors)
    supervisor.process.send_signal(signal.SIGKILL)  # nothing is recorded, nothing restarts it
    supervisor.process.wait(timeout=30)
    ended = wait_for(lambda: [t for t in tasks(orchzip_cli) if t["status"] == "failed"], 60, "the task to end")
    assert ended[0]["id"] == task["id"]
    (run,) = runs(orchzip_cli, task["id"])
    assert run["status"] == "failure" and "--continuously stopped" in run["error"]
    refused = orchzip_cli("tasks", "kill", task["id"])
    assert refused.code == 2 and "already ended (failed)" in refused.err


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig_name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_of_orchzip_run_continuously_kill_the_task_and_record_why(
        orchzip_cli, state_dir, tmp_path, supervisors, sig_name):
    import signal
    supervisor, task = serving(orchzip_cli, state_dir, tmp_path, supervisors)
    supervisor.process.send_signal(getattr(signal, sig_name))
    code, out, err = supervisor.finish()
    assert code == 130 and "interrupted" in err, (code, err)
    (run,) = runs(orchzip_cli, task["id"])
    assert run["status"] == "killed" and sig_name in run["error"], run
    assert orchzip_cli("tasks", "show", task["id"], "--json").json()["status"] == "killed"


@pytest.mark.timeout(180)
def test_restarts_run_the_code_the_task_started_with_after_the_folder_is_edited_and_run_again(
        orchzip_cli, state_dir, tmp_path, supervisors):
    folder = orchestration(tmp_path, "versioned", """\
        print("version one")
    """)
    supervisor = supervisors(state_dir, folder, "--backoff", "0.2", "--max-backoff", "0.2")
    (task,) = wait_for(lambda: [t for t in tasks(orchzip_cli) if t["kind"] == "continuous"], 60, "the task")
    wait_for(lambda: len(runs(orchzip_cli, task["id"])) >= 1, 60, "a first run")
    (pathlib.Path(folder) / "main.py").write_text('print("version two")\n')
    edited = orchzip_cli("run", folder, "--no-env", "--json")  # rebuilds the folder's zip in the state
    assert edited.code == 0 and "version two" in orchzip_cli("runs", "logs", edited.json()["id"]).out
    count = len(runs(orchzip_cli, task["id"]))
    wait_for(lambda: len(runs(orchzip_cli, task["id"])) >= count + 2, 60, "two more restarts")
    assert orchzip_cli("tasks", "kill", task["id"]).code == 0
    supervisor.finish()
    said = [orchzip_cli("runs", "logs", r["id"]).out for r in runs(orchzip_cli, task["id"])]
    assert said and all("version one" in text and "version two" not in text for text in said)
