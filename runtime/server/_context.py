"""What the server's endpoints share: the store, the background work and the scheduler.

Packaging and run-once tasks run on threads of their own, never on the request threads: a
request only records what to do and returns. At start the server takes up what a previous
server left unfinished (orchestrations still packaging, run-once runs still recorded
running), so its state survives a restart; at stop it kills the runs it owns.
"""

import concurrent.futures
import logging
import os
import threading


from orchzip.errors import OrchzipError
from orchzip.runtime.store import Store

log = logging.getLogger("orchzip.server")

LOST_RUN = "orchzip serve stopped (lost run)"
STOPPED_RUN = "orchzip serve stopped"
KILL_WAIT_SECONDS = 15.0


class ServerContext:
    """Shared state of one server process.

    :param no_env: run tasks in orchzip's own Python rather than per-task environments.
    :param max_upload_bytes: the largest orchestration zip accepted.
    :param scheduler: run the scheduler in this process (it fires ``run_scheduled`` tasks).
    """

    def __init__(self, state_dir, no_env=False, max_upload_bytes=None, scheduler=True):
        from orchzip.builder import DEFAULT_MAX_SIZE
        self.state_dir = os.path.abspath(state_dir)
        self.store = Store(self.state_dir)
        self.no_env = no_env
        self.max_upload_bytes = max_upload_bytes or DEFAULT_MAX_SIZE
        self.with_scheduler = scheduler
        self.packager = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="packaging")
        self.running = {}  # task id -> RunningTask of run-once tasks this server started
        self._running_lock = threading.Lock()
        self._threads = set()
        self._stopping = threading.Event()
        self.scheduler = None
        self._scheduler_thread = None
        self.models = None  # set by the inference module

    # -- life cycle -----------------------------------------------------------------------
    def start(self):
        self._recover_runs()
        for orch in self.store.list_orchestrations():
            if orch["status"] in ("pending_packaging", "packaging"):
                self.submit_packaging(orch["id"])
        if self.with_scheduler:
            self._start_scheduler()

    def stop(self, grace=5.0):
        self._stopping.set()
        if self.scheduler is not None:
            self.scheduler.stop(grace=grace)
        # Each run's own thread sees the stop (its should_stop) and kills it: one thread per run
        # ever records how it ended.
        with self._running_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(KILL_WAIT_SECONDS)
        self.packager.shutdown(wait=False, cancel_futures=True)
        if self._scheduler_thread is not None:
            self._scheduler_thread.join(grace + 10)

    def _start_scheduler(self):
        from orchzip.runtime.scheduler.loop import Scheduler, SchedulerBusy

        self.scheduler = Scheduler(Store(self.state_dir))

        def loop():
            try:
                self.scheduler.run()
            except SchedulerBusy as err:
                log.warning("scheduled tasks fire in the other scheduler: %s", err)
            except Exception:
                log.exception("the scheduler stopped with an error; scheduled tasks no longer fire")

        self._scheduler_thread = threading.Thread(target=loop, name="scheduler", daemon=True)
        self._scheduler_thread.start()

    def wake_scheduler(self):
        if self.scheduler is not None:
            self.scheduler.wakeup()

    def _recover_runs(self):
        """Runs of this server's run-once tasks left ``running`` by a server that died."""
        for run in self.store.running_runs(kind="run_once"):
            task = self.store.get_task(run["task_id"])
            if not task.get("orch_id"):
                continue  # an `orchzip run` of its own, maybe still going
            from orchzip.runtime.runner import settle_lost_run
            final = settle_lost_run(self.store, run, LOST_RUN)  # from its commit records
            log.warning("run %s of task %s: %s (%s)", run["id"], task["id"], final["status"],
                        final.get("error") or final.get("note"))
        for task in self.store.list_tasks(kind="run_once"):
            if not task.get("orch_id") or task["status"] not in ("pending", "started", "pending_kill"):
                continue
            if task["status"] == "pending_kill":
                self.store.update_task(task["id"], status="killed")
            elif not self.store.list_runs(task_id=task["id"], limit=1):
                # Started by a server that died before its run was recorded: it never ran.
                self.store.update_task(task["id"], status="failed")

    # -- background work ------------------------------------------------------------------
    def submit_packaging(self, orch_id):
        from orchzip.runtime.server._orchestrations import package
        self.packager.submit(package, self, orch_id)

    def start_run_once(self, task):
        thread = threading.Thread(target=self._run_once, args=(task,), name=f"task-{task['id'][:8]}", daemon=True)
        with self._running_lock:
            self._threads.add(thread)
        thread.start()

    def _run_once(self, task):
        try:
            self._start_and_watch(task)
        finally:
            with self._running_lock:
                self.running.pop(task["id"], None)
                self._threads.discard(threading.current_thread())

    def _start_and_watch(self, task):
        from orchzip.runtime.runner import start_run
        from orchzip.runtime.scheduler.control import kill_requested

        try:
            if self._stopping.is_set() or kill_requested(self.store, task["id"]):
                self.store.update_task(task["id"], status="killed")
                return
            handle = start_run(self.store, task, no_env=self.no_env)
        except OrchzipError as err:  # recorded as the run's error by start_run
            log.warning("task %s could not start: %s", task["id"], err)
            return
        except Exception:
            log.exception("task %s could not start", task["id"])
            self.store.update_task(task["id"], status="failed")
            return
        with self._running_lock:
            self.running[task["id"]] = handle
        try:
            final = handle.wait(should_stop=lambda: self._stopping.is_set() or kill_requested(self.store, task["id"]))
            if self._stopping.is_set() and final["status"] == "killed":
                final = self.store.update_run(final["id"], error=STOPPED_RUN)
            log.info("task %s: run %s %s", task["id"], final["id"], final["status"])
        except Exception:
            log.exception("task %s: watching its run failed", task["id"])
            handle.kill("killed", "orchzip serve lost track of the run")
