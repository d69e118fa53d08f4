"""Run-once tasks on this machine: unpack a zip, start main.py in a child process, record it.

Each run gets ``<state>/runs/<run id>/`` holding the unpacked zip (``work/``), the task
context (args, connections, pipelines; owner-only; the task moves it into memory as it
starts), the log of everything the task printed, the progress events the shim writes, and
the commit records of its sinks. The child runs in its own process group so that a timeout
or a kill stops the whole tree it started, and dies with its runner (see task_bootstrap).

A run's status is settled from its sinks' commit records (see ``settle``), not from how the
process ended: a kill that lands after the output committed records ``success``.

Every run has an *idempotency key* that names its output across retries (see
:func:`idempotency_key`); sinks record it in their ledgers with the data, so a retry of a run
whose output did commit writes nothing again.
"""

import json
import os
import signal
import subprocess
import sys
import time

import psutil

from orchzip.errors import ConfigError, OrchzipError
from orchzip.runtime import settle as settling
from orchzip.runtime.model_envs import with_model_envs
from orchzip.runtime.registry import list_models, model_spec, pipeline_specs
from orchzip.runtime.store import utcnow
from orchzip.runtime.task_logs import READY, SETTING_UP, TaskLog, last_error_line, resolve_max_bytes
from orchzip.runtime.wallaroo_versions import anomaly_column, resolve_version

__all__ = ["RunningTask", "prepare_zip", "start_run", "run_once", "reconcile_lost_runs", "TASK_STATUS_FOR_RUN"]

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "task_bootstrap.py")
# The program that runs a pipeline's non-ONNX steps (see orchzip_shim.model_workers).
MODEL_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_worker")
KILL_GRACE_SECONDS = 3.0
POLL_SECONDS = 0.1

# A run-once task's status once its run ended. As on Wallaroo, a task that has run stays
# `started` whatever its run's outcome (success, failure, timed_out): the outcome lives on the
# run. Only a kill ends the task itself.
TASK_STATUS_FOR_RUN = {"success": "started", "failure": "started", "killed": "killed", "timed_out": "started"}


def prepare_zip(store, target):
    """The zip to run for ``target``: a zip as it is, or a folder built into one first (the
    last build of that folder when nothing in it changed)."""
    target = os.path.abspath(target)
    if os.path.isdir(target):
        from orchzip.builder import build_unless_unchanged
        return build_unless_unchanged(target, store.dir_for("builds"))
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


def idempotency_key(task, fire_time=None):
    """What names a run's output across retries: the same for every try of one fire.

    A user ``run_id`` task arg (``orchzip run ... --arg run_id=2026-12-01``) names it;
    otherwise the task does (a run-once task is one request). A scheduled fire adds its fire
    time, so each fire writes once and a retry of that fire reuses its key.
    """
    base = task["args"].get("run_id") if isinstance(task.get("args"), dict) else None
    base = str(base) if base not in (None, "") else task["id"]
    return f"{base}@{fire_time}" if fire_time else base


def task_context(store, task, run_id, key=None):
    """What the shim (or the wallaroo stand-in) inside the task may see."""
    version = task.get("wallaroo_version") or resolve_version()
    return {
        "task_id": task["id"],
        "run_id": run_id,
        "idempotency_key": key,
        "args": task["args"],
        "connections": {
            c["name"]: {k: c[k] for k in ("id", "type", "details", "created_at", "workspace_names")}
            for c in store.list_connections()
        },
        "pipelines": {p["name"]: pipeline_entry(store, p) for p in store.list_pipelines()},
        # Every registered model version, as specs: what wl.get_model(name) finds in the task.
        "models": [dict(model_spec(m), workspace=m["workspace_name"]) for m in list_models(store)],
        # The Python that runs orchzip: the stand-in checks models the task uploads with it.
        "orchzip_python": sys.executable,
        "workspaces": [{k: w[k] for k in ("id", "name", "created_at")} for w in store.list_workspaces()],
        # The Wallaroo release whose behaviour the task sees (see wallaroo_versions), and the
        # name that release gives the results' check count, for the shim and the stand-in.
        "wallaroo_version": version,
        "anomaly_column": anomaly_column(version),
    }


def pipeline_entry(store, pipeline):
    """A pipeline as the task context and serve carry it: its steps' model specs (see registry).

    ``model`` and ``tensor_column`` are those of a pipeline of one ONNX step, for shims that
    predate steps (a zip vendors the shim it was built with). Such a shim would run only the
    first step of a longer pipeline, so for one its ``model`` names no file: it fails with a
    line that says to rebuild the zip, rather than give the first step's outputs as results.
    """
    # A model's environment is rebuilt here when its cache was cleared (or the state was copied
    # to another machine), so the task's workers find their Python.
    specs = with_model_envs(pipeline_specs(store, pipeline))
    one_onnx = len(specs) == 1 and specs[0]["framework"] == "onnx"
    stale = (f"(pipeline {pipeline['name']!r} has {len(specs)} steps, {specs[0]['framework']} first: "
             f"rebuild the zip with this orchzip to run them)")
    return {"steps": specs, "model": specs[0]["path"] if one_onnx else stale,
            "tensor_column": specs[0]["tensor_column"] if one_onnx else None,
            "workspace": pipeline["workspace_name"]}  # None: the default workspace


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
        :param should_stop: polled; when it returns true the run is killed (with that reason,
            when it is a string). It is polled first in each turn, so a caller that defers its
            signals to it (see orchzip.commands.run.StopSignals) does so before the loop starts.
        """
        while True:
            stop = should_stop() if should_stop is not None else None
            if stop:
                return self.kill("killed", stop if isinstance(stop, str) else "killed on request")
            final = self.poll()
            for event in self.read_events():
                if on_event is not None:
                    on_event(event)
            if on_output is not None:
                for stream, text in self.read_output():
                    on_output(stream, text)
            if final is not None:
                return final
            self.pause()

    def pause(self, seconds=POLL_SECONDS):
        """Wait ``seconds``, or less if main.py's process ends first (then it is noticed at once)."""
        try:
            self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            pass

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
        settling.remove_secrets(self.run_dir)
        if error is None and status == "failure":
            error = last_error_line(self.run["log_path"]) or f"main.py exited with code {exit_code}"
        status, error, note = settled_status(self.run_dir, status, error, self.store)
        stats = {k: self.progress.get(k) for k in ("rows_read", "rows_inferred", "rows_written", "seconds")}
        self.final = self.store.update_run(
            self.run_id, status=status, exit_code=exit_code, ended_at=utcnow(), error=error, note=note, **stats,
            **log_stats
        )
        if self.task["kind"] == "run_once":
            self.store.update_task(self.task["id"], status=TASK_STATUS_FOR_RUN[status])
        return self.final


def settled_status(run_dir, status, error, store=None):
    """``(status, error, note)`` of an ended run, from its sinks' commit records (see settle).

    :param status: how the process ended (success, failure, killed, timed_out).
    :param store: where connection details come from when a ledger needs credentials.
    """
    result = settling.settle(run_dir, details_of=_details_of(store) if store is not None else None)
    note = result.note()
    if status == "success" or result.outcome == "none":
        return status, error, note
    if result.outcome == "committed":
        how = f"{status}: {error}" if error else status
        return "success", None, "; ".join(filter(None, [f"the output committed before the run ended ({how})", note]))
    if result.outcome == "unknown":
        return status, f"lost: {error}; {note}" if error else f"lost: {note}", note
    return status, f"{error}; {note}" if error else note, note


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


def _details_of(store):
    def details(name):
        from orchzip_shim.context import expand_env
        return expand_env(store.get_connection(name)["details"])
    return details


LOST_RUN = "orchzip run stopped before the run ended"


def settle_lost_run(store, run, reason):
    """Record how a run nobody watches any more ended, from its commit records; returns it.

    What is left of its process tree is killed first (so nothing commits after we look).
    ``reason`` says who lost it (e.g. the scheduler stopped).
    """
    kill_lost_run(run)
    kill_lost_group(run)
    run_dir = os.path.join(store.state_dir, "runs", run["id"])
    settling.remove_secrets(run_dir)
    status, error, note = settled_status(run_dir, "failure", reason, store)
    if status == "failure" and settling.settle(run_dir, details_of=_details_of(store)).outcome == "none":
        error = f"{reason}; no sink committed, so nothing was written"
    final = store.update_run(run["id"], status=status, ended_at=utcnow(), error=error, note=note)
    task = store.get_task(run["task_id"])
    if task["kind"] == "run_once":
        store.update_task(task["id"], status=TASK_STATUS_FOR_RUN[status])
    return final


def reconcile_lost_runs(store):
    """Settle the runs of `orchzip run` tasks whose process is gone unrecorded.

    An `orchzip run` killed outright cannot record how its run ended; its task died with it
    (see task_bootstrap), and the run's commit records say whether its output committed.
    Runs of scheduled tasks and of `orchzip serve` are left to the scheduler and the server,
    which recover their own.
    """
    for run in store.running_runs(kind="run_once"):
        task = store.get_task(run["task_id"])
        if task.get("orch_id") or not (run.get("pid") or run.get("runner_pid")):
            continue  # not ours, or a row too old to tell who ran it
        if (run.get("pid") and _run_process_alive(run)) or _runner_alive(run):
            continue
        settle_lost_run(store, run, LOST_RUN)


def _runner_alive(run):
    """Whether the `orchzip run` that started ``run`` still runs (it records the run itself)."""
    runner = run.get("runner_pid")
    if not runner:
        return False
    try:
        process = psutil.Process(runner)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= _iso_seconds(run["created_at"]) + 1
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _iso_seconds(text):
    import datetime
    return datetime.datetime.fromisoformat(text).timestamp()


def kill_lost_group(run):
    """Kill processes left in a lost run's process group (its task's own children).

    The task itself dies with its runner; processes main.py started may outlive it. They
    carry the run's ORCHZIP_RUN_ID, which tells them from a reused group id.
    """
    if not run.get("pid"):
        return
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) == run["pid"] and process.environ().get("ORCHZIP_RUN_ID") == run["id"]:
                process.kill()
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue


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
    run = store.create_run(task["id"], runner_pid=os.getpid())
    key = idempotency_key(task, run.get("fire_time"))
    run = store.update_run(run["id"], idempotency_key=key)
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
        _write_private(context_path, json.dumps(task_context(store, task, run["id"], key), indent=1))
        _write_private(os.path.join(work_dir, "arguments.json"), json.dumps(task["args"]))
    except BaseException as err:  # an interrupt while the environment builds is recorded too
        settling.remove_secrets(run_dir)
        status = "failure" if isinstance(err, OrchzipError) else "killed"
        error = str(err) if isinstance(err, OrchzipError) else f"stopped before the task started ({err!r})"
        log.write("stderr", f"orchzip: error: {error}")
        store.update_run(run["id"], status=status, ended_at=utcnow(), error=error, work_dir=work_dir,
                         **finish_log(log, status))
        if task["kind"] == "run_once":
            store.update_task(task["id"], status=TASK_STATUS_FOR_RUN[status])
        raise
    env = dict(os.environ)
    env.update(extra_env or {})
    env.update(
        ORCHZIP_CONTEXT=context_path,
        ORCHZIP_EVENTS=os.path.join(run_dir, "events.jsonl"),
        ORCHZIP_COMMITS=os.path.join(run_dir, settling.COMMITS_FILE),
        ORCHZIP_IDEMPOTENCY_KEY=key,
        ORCHZIP_PARENT_PID=str(os.getpid()),
        ORCHZIP_MODEL_WORKER=MODEL_WORKER,
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
        log.write("stdout", line, shown=False)  # on_env_progress shows it, as chatty as its caller asks
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
        (how `orchzip tasks kill` reaches a run started by `orchzip run` in another process);
        a string is the reason the run record gives.
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
    except BaseException as err:
        # Ctrl-C, or SIGTERM/SIGHUP turned into an interrupt by the CLI: stop the tree, record it.
        running.kill("killed", f"orchzip run was interrupted ({err})" if str(err) else "orchzip run was interrupted")
        raise
