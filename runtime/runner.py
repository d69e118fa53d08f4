"""Run-once tasks on this machine: unpack a zip, start main.py in a child process, record it.

Each run gets ``<state>/runs/<run id>/`` holding the unpacked zip (``work/``), the task
context (args, connections, pipelines; owner-only), the log of everything the task printed,
and the progress events the shim writes. The child runs in its own process group so that a
timeout or a kill stops the whole tree it started.
"""

import json
import os
import signal
import subprocess
import time

import psutil

from orchzip.errors import ConfigError, OrchzipError
from orchzip.runtime.store import utcnow
from orchzip.runtime.task_logs import READY, SETTING_UP, TaskLog, last_error_line, resolve_max_bytes
from orchzip.runtime.wallaroo_versions import resolve_version

__all__ = ["RunningTask", "prepare_zip", "start_run", "run_once", "reconcile_lost_runs", "TASK_STATUS_FOR_RUN"]

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "task_bootstrap.py")
KILL_GRACE_SECONDS = 3.0
POLL_SECONDS = 0.1

# A run-once task ends with the status of its run, in Wallaroo's words for tasks.
TASK_STATUS_FOR_RUN = {"success": "success", "failure": "failed", "killed": "killed", "timed_out": "timed_out"}


def prepare_zip(store, target):
    """The zip to run for ``target``: a zip as it is, or a folder built into one first."""
    target = os.path.abspath(target)
    if os.path.isdir(target):
        from orchzip.builder import build
        return build(target, store.dir_for("builds")).zip_path
    if not os.path.isfile(target):
        raise ConfigError(f"{target} is neither an orchestration folder nor a zip file")
    return target


def find_first(work_dir, file_name):
    """``file_name`` at the root of an unpacked zip, else the first in a subfolder (Wallaroo's rule)."""
    if os.path.isfile(os.path.join(work_dir, file_name)):
        return os.path.join(work_dir, file_name)
    for root, dirs, files in os.walk(work_dir):
        dirs.sort()
        if file_name in files:
            return os.path.join(root, file_name)
    return None


def find_main(work_dir):
    main_py = find_first(work_dir, "main.py")
    if main_py is None:
        raise ConfigError("the zip holds no main.py; an orchestration needs main.py at its root")
    return main_py


def task_context(store, task, run_id):
    """What the shim (or the wallaroo stand-in) inside the task may see."""
    return {
        "task_id": task["id"],
        "run_id": run_id,
        "args": task["args"],
        "connections": {
            c["name"]: {k: c[k] for k in ("id", "type", "details", "created_at", "workspace_names")}
            for c in store.list_connections()
        },
        "pipelines": {
            p["name"]: {"model": p["model_path"], "tensor_column": p["tensor_column"]}
            for p in store.list_pipelines()
        },
        "workspaces": [w["name"] for w in store.list_workspaces()],
        # The Wallaroo release whose behaviour the task sees (see wallaroo_versions).
        "wallaroo_version": task.get("wallaroo_version") or resolve_version(),
    }


def _write_private(path, text):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


class RunningTask:
    """One started run: poll it, wait for it, or kill it; every end is recorded in the store."""

    def __init__(self, store, task, run, process, run_dir, timeout, log=None):
        self.store, self.task, self.run, self.process = store, task, run, process
        self.log = log  # the TaskLog the task's output is pumped into
        self.run_dir = run_dir
        self.timeout = timeout
        self.started = time.monotonic()
        self.events_path = os.path.join(run_dir, "events.jsonl")
        self._events_offset = 0
        self.progress = {}  # the last row counts the shim reported
        self.timings = {}  # when main.py started and ended (epoch seconds), from the bootstrap
        self.final = None

    @property
    def run_id(self):
        return self.run["id"]

    def read_events(self):
        """New progress events since the last call (each a dict)."""
        try:
            with open(self.events_path, encoding="utf-8") as fh:
                fh.seek(self._events_offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        complete = chunk[: chunk.rfind("\n") + 1]
        self._events_offset += len(complete.encode("utf-8"))
        events = [json.loads(line) for line in complete.splitlines() if line.strip()]
        for event in events:
            if "rows_read" in event:
                self.progress = event
            elif event.get("event") in ("main_started", "main_ended"):
                self.timings[event["event"]] = event["at"]
        return events

    def poll(self):
        """The final run record if the run has ended (recording it), else None."""
        if self.final is not None:
            return self.final
        if self.timeout and time.monotonic() - self.started > self.timeout:
            return self.kill("timed_out", f"timed out after {self.timeout:g} s")
        code = self.process.poll()
        if code is None:
            return None
        self._reap_leftovers()
        return self._finish("success" if code == 0 else "failure", code)

    def read_output(self):
        """What the log took in since the last call: ``(stream, text)`` pieces, in order."""
        return self.log.take_output() if self.log is not None else []

    def wait(self, on_event=None, on_output=None, should_stop=None):
        """Block until the run ends.

        :param on_event: called with each progress event (a dict) the task reports.
        :param on_output: called with each new ``(stream, text)`` piece of the run's log.
        :param should_stop: polled; when it returns true the run is killed.
        """
        while True:
            final = self.poll()
            for event in self.read_events():
                if on_event is not None:
                    on_event(event)
            if on_output is not None:
                for stream, text in self.read_output():
                    on_output(stream, text)
            if final is not None:
                return final
            if should_stop is not None and should_stop():
                return self.kill("killed", "killed on request")
            time.sleep(POLL_SECONDS)

    def kill(self, status="killed", reason="killed on request"):
        """Stop the whole process tree (TERM, then KILL after a grace period) and record it."""
        if self.final is not None:
            return self.final
        kill_tree(self.process.pid, KILL_GRACE_SECONDS)
        code = self.process.wait()
        return self._finish(status, code, reason)

    def _reap_leftovers(self):
        # main.py is done; anything it left running in its group goes with it.
        kill_tree(self.process.pid, 0.5)

    def _finish(self, status, exit_code, error=None):
        self.read_events()
        log_stats = finish_log(self.log, status)
        # The context may hold connection secrets: it lives only as long as the run.
        for name in ("context.json", os.path.join("work", "arguments.json")):
            try:
                os.unlink(os.path.join(self.run_dir, name))
            except FileNotFoundError:
                pass
        if error is None and status == "failure":
            error = last_error_line(self.run["log_path"]) or f"main.py exited with code {exit_code}"
        stats = {k: self.progress.get(k) for k in ("rows_read", "rows_inferred", "rows_written", "seconds")}
        self.final = self.store.update_run(
            self.run_id, status=status, exit_code=exit_code, ended_at=utcnow(), error=error, **stats, **log_stats
        )
        if self.task["kind"] == "run_once":
            self.store.update_task(self.task["id"], status=TASK_STATUS_FOR_RUN[status])
        return self.final


def kill_tree(pid, grace):
    """TERM the process group of ``pid`` and every descendant; KILL what is left after ``grace``."""
    try:
        victims = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        victims = []
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in victims:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(victims, timeout=grace)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def kill_lost_run(run):
    """Kill what is left of a lost run's process tree, if its process is still that run's.

    The pid may have been reused since: the process must carry the run's ORCHZIP_RUN_ID.
    :returns: whether something was killed.
    """
    if not run.get("pid"):
        return False
    try:
        if psutil.Process(run["pid"]).environ().get("ORCHZIP_RUN_ID") != run["id"]:
            return False
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    kill_tree(run["pid"], 2.0)
    return True


LOST_RUN = "lost: its orchzip run stopped before the run ended"


def reconcile_lost_runs(store):
    """Record as failed the runs of `orchzip run` tasks whose process is gone unrecorded.

    An `orchzip run` killed outright cannot record how its run ended. Runs of scheduled tasks
    and of `orchzip serve` are left to the scheduler and the server, which recover their own.
    """
    for run in store.running_runs(kind="run_once"):
        task = store.get_task(run["task_id"])
        if task.get("orch_id") or not run.get("pid") or _run_process_alive(run):
            continue
        store.update_run(run["id"], status="failure", ended_at=utcnow(), error=LOST_RUN)
        store.update_task(task["id"], status="failed")


def _run_process_alive(run):
    try:
        process = psutil.Process(run["pid"])
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.environ().get("ORCHZIP_RUN_ID") == run["id"]
    except psutil.AccessDenied:
        return True  # not ours to judge
    except psutil.NoSuchProcess:
        return False


def start_run(store, task, python=None, extra_env=None, python_path=(), no_env=False, on_env_progress=None):
    """Unpack the task's zip into a fresh run directory and start main.py; returns RunningTask.

    :param python: the interpreter to run the task with (default: the environment built from
        the zip's requirements.txt, see ``environments``).
    :param extra_env: environment variables for the task, over orchzip's own environment.
    :param python_path: directories put on the task's ``PYTHONPATH`` after the zip's root.
    :param no_env: run the task in orchzip's own interpreter instead of a task environment.
    :param on_env_progress: called with each line of progress while an environment builds.
    """
    from orchzip.builder import safe_extract
    from orchzip.runtime.environments import task_interpreter

    log_max_bytes = resolve_max_bytes(task.get("log_max_bytes"))  # a bad setting starts no run
    run = store.create_run(task["id"])
    run_dir = store.dir_for("runs", run["id"])
    work_dir = os.path.join(run_dir, "work")
    log = open_log(store, run, run_dir, log_max_bytes)
    try:
        safe_extract(task["source"], work_dir)
        main_py = find_main(work_dir)
        # Before the context is written: a failed environment build leaves no secrets behind.
        python, support_path, python_note = task_interpreter(
            work_dir, python=python, no_env=no_env, on_progress=log_env_progress(log, on_env_progress),
            wallaroo_version=task.get("wallaroo_version"),
        )
        context_path = os.path.join(run_dir, "context.json")
        _write_private(context_path, json.dumps(task_context(store, task, run["id"]), indent=1))
        _write_private(os.path.join(work_dir, "arguments.json"), json.dumps(task["args"]))
    except OrchzipError as err:
        log.write("stderr", f"orchzip: error: {err}")
        store.update_run(run["id"], status="failure", ended_at=utcnow(), error=str(err), work_dir=work_dir,
                         **finish_log(log, "failure"))
        if task["kind"] == "run_once":
            store.update_task(task["id"], status="failed")
        raise
    env = dict(os.environ)
    env.update(extra_env or {})
    env.update(
        ORCHZIP_CONTEXT=context_path,
        ORCHZIP_EVENTS=os.path.join(run_dir, "events.jsonl"),
        ORCHZIP_RUN_ID=run["id"],
        ORCHZIP_TASK_ID=task["id"],
        WALLAROO_TASK_ID=task["id"],
        PYTHONPATH=os.pathsep.join([work_dir, *support_path, *python_path]),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    log.write("stdout", python_note)
    log.frame(READY)
    try:
        process = subprocess.Popen(
            [python, BOOTSTRAP, main_py],
            cwd=os.path.dirname(main_py),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a kill reaches the whole tree
        )
    except OSError as err:
        log.write("stderr", f"orchzip: error: cannot start {python}: {err.strerror}")
        store.update_run(run["id"], status="failure", ended_at=utcnow(), error=f"cannot start {python}: {err.strerror}",
                         work_dir=work_dir, **finish_log(log, "failure"))
        raise ConfigError(f"cannot start the task's Python {python}: {err.strerror}") from None
    # Pumped as it is printed: the log grows while the task runs, not when it ends.
    log.pump(process.stdout, "stdout")
    log.pump(process.stderr, "stderr")
    run = store.update_run(run["id"], pid=process.pid, started_at=utcnow(), work_dir=work_dir)
    if task["kind"] == "run_once":
        store.update_task(task["id"], status="started")
    return RunningTask(store, task, run, process, run_dir, task.get("timeout"), log=log)


def open_log(store, run, run_dir, max_bytes):
    """The run's log, opened with Wallaroo's first framing line; its path is recorded at once."""
    log_path = os.path.join(run_dir, "log.txt")
    log = TaskLog(log_path, max_bytes=max_bytes,
                  on_truncated=lambda stats: store.update_run(run["id"], **stats))
    log.frame(SETTING_UP)
    store.update_run(run["id"], log_path=log_path)
    return log


def log_env_progress(log, on_env_progress=None):
    """Progress of a task environment build: into the run's log, and to ``on_env_progress``."""
    def on_progress(line):
        log.write("stdout", line)
        if on_env_progress is not None:
            on_env_progress(line)
    return on_progress


def finish_log(log, status):
    """Close a run's log with Wallaroo's last framing line; returns what the run record keeps of it."""
    if log is None:
        return {}
    return log.finish(status)


def run_once(store, target, args=None, timeout=None, name=None, python=None, on_event=None, on_output=None,
             no_env=False, on_env_progress=None, should_stop=None, log_max_bytes=None, wallaroo_version=None):
    """Run ``target`` (a zip or an orchestration folder) once, to the end; returns the run.

    :param args: the task args (a JSON object) main.py reads.
    :param timeout: seconds before the run is killed and recorded ``timed_out``.
    :param on_event: called with each progress event the task reports.
    :param on_output: called with each new ``(stream, text)`` piece of the run's log.
    :param no_env: run in orchzip's own interpreter, not the zip's task environment.
    :param on_env_progress: called with each line of progress while a task environment builds.
    :param should_stop: called with the task (a dict) while the run goes; true kills the run
        (how `orchzip tasks kill` reaches a run started by `orchzip run` in another process).
    :param log_max_bytes: the cap of the run's log (default: ``$ORCHZIP_LOG_MAX_BYTES`` or 16 MiB).
    :param wallaroo_version: the Wallaroo release the task targets (default: see
        ``wallaroo_versions.resolve_version``); kept with the task.
    """
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout must be a positive number of seconds, not {timeout}")
    resolve_max_bytes(log_max_bytes)  # refused before anything is built or recorded
    wallaroo_version = resolve_version(wallaroo_version)  # an unknown version fails before any work
    zip_path = prepare_zip(store, target)
    task = store.create_task(
        "run_once", zip_path, args=args or {}, name=name or os.path.basename(target.rstrip("/")), timeout=timeout,
        log_max_bytes=log_max_bytes, wallaroo_version=wallaroo_version,
    )
    running = start_run(store, task, python=python, no_env=no_env, on_env_progress=on_env_progress)
    try:
        return running.wait(on_event=on_event, on_output=on_output,
                            should_stop=(lambda: should_stop(task)) if should_stop else None)
    except BaseException:
        running.kill("killed", "orchzip run was interrupted")
        raise
