"""A long run history in a real state store, for the dashboard's tests and screenshots.

A scheduled task of the ``hello`` test orchestration gets ``count`` runs, one a minute,
inserted in one transaction: mostly successes with varying durations and row counts, some
failures with a few recurring reasons, some timeouts and kills.
"""

import datetime
import os
import random
import uuid

from orchzip.runtime.scheduler.control import schedule_task
from orchzip.runtime.store import Store

HELLO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "serve", "hello")
REASONS = [
    "ValueError: input table houses has no column 'tensor'",
    "connection 'bq-results' refused: 503 Service Unavailable (attempt 3)",
    "MemoryError: could not allocate 1048576 bytes",
]


def fill_history(state_dir, count, name="nightly-scores", seed=7, end=None, cron="*/5 * * * *"):
    """Register the task and insert ``count`` finished runs ending at ``end``; returns (task, counts)."""
    store = Store(state_dir)
    try:
        task = schedule_task(store, HELLO, cron, name=name, args={"ticks": 1}, no_env=True)
        rng = random.Random(seed)
        end = end or datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        rows, counts = [], {}
        for i in range(count):
            started = end - datetime.timedelta(minutes=count - i)
            status = rng.choices(["success", "failure", "timed_out", "killed"], [88, 8, 3, 1])[0]
            seconds = max(0.5, rng.gauss(40 + 15 * ((i // 500) % 3), 6))
            if status == "timed_out":
                seconds = 120.0
            written = int(rng.gauss(100_000, 8_000)) if status == "success" else None
            error = {"failure": rng.choice(REASONS), "timed_out": f"timed out after {120 + rng.randint(0, 3)} s",
                     "killed": "killed on request"}.get(status)
            iso = lambda moment: moment.isoformat(timespec="milliseconds")  # noqa: E731
            ended = started + datetime.timedelta(seconds=seconds)
            rows.append((str(uuid.UUID(int=rng.getrandbits(128))), task["id"], status, iso(started), iso(ended),
                         iso(started), iso(ended), 0 if status == "success" else 1, written, written, written,
                         round(seconds, 3), error, iso(started), 1))
            counts[status] = counts.get(status, 0) + 1
        with store.transaction() as db:
            db.executemany(
                "INSERT INTO runs(id, task_id, status, created_at, updated_at, started_at, ended_at, exit_code, "
                "rows_read, rows_inferred, rows_written, seconds, error, fire_time, attempt) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return store.get_task(task["id"]), counts
    finally:
        store.close()
