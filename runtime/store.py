"""orchzip's local state: one SQLite database under the state directory.

It holds named connections, local pipelines, workspaces, tasks and their runs. The database
runs in WAL mode so that other orchzip commands can read while a run or the scheduler
writes; the directory and the database are readable by their owner only, because
connection details may hold credentials.
"""

import datetime
import json
import os
import shutil
import sqlite3
import threading
import uuid

from orchzip.errors import ConfigError
from orchzip.runtime import connection_schemas

__all__ = ["Store", "NotFound", "AlreadyExists", "utcnow"]

DB_NAME = "state.db"


class NotFound(ConfigError):
    pass


class AlreadyExists(ConfigError):
    pass


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


# Each entry upgrades the schema by one version; never edit a released entry, add one.
MIGRATIONS = [
    """
    CREATE TABLE workspaces (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE connections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        details TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE connection_workspaces (
        connection_id INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
        workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
        PRIMARY KEY (connection_id, workspace_id)
    );
    CREATE TABLE pipelines (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        model_path TEXT NOT NULL,
        tensor_column TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        name TEXT,
        kind TEXT NOT NULL,              -- run_once | scheduled
        status TEXT NOT NULL,            -- pending, started, pending_kill, killed, failed, success, timed_out
        source TEXT NOT NULL,            -- the zip the task runs
        args TEXT NOT NULL DEFAULT '{}',
        timeout REAL,
        schedule TEXT,
        workspace_id INTEGER,
        orch_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        task_id TEXT NOT NULL REFERENCES tasks(id),
        status TEXT NOT NULL,            -- running, success, failure, killed, timed_out
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT,
        exit_code INTEGER,
        pid INTEGER,
        log_path TEXT,
        work_dir TEXT,
        rows_read INTEGER,
        rows_inferred INTEGER,
        rows_written INTEGER,
        seconds REAL,
        error TEXT
    );
    CREATE INDEX runs_by_task ON runs(task_id, created_at);
    """,
    # 2: scheduled tasks. Times are UTC ISO strings as utcnow() writes them, so they sort
    # as text. A fire the scheduler did not run (overlap, missed while it was down) is a
    # row of skipped_fires, not a run: Wallaroo's run statuses have no "skipped".
    """
    ALTER TABLE tasks ADD COLUMN tz TEXT;
    ALTER TABLE tasks ADD COLUMN overlap TEXT;
    ALTER TABLE tasks ADD COLUMN misfire_grace REAL;
    ALTER TABLE tasks ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN retry_backoff REAL;
    ALTER TABLE tasks ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN next_fire_at TEXT;
    ALTER TABLE tasks ADD COLUMN claimed_fire_at TEXT;
    ALTER TABLE tasks ADD COLUMN retry_at TEXT;
    ALTER TABLE tasks ADD COLUMN retry_fire_at TEXT;
    ALTER TABLE tasks ADD COLUMN retry_attempt INTEGER;
    ALTER TABLE runs ADD COLUMN fire_time TEXT;
    ALTER TABLE runs ADD COLUMN attempt INTEGER;
    CREATE INDEX runs_by_status ON runs(status);
    CREATE TABLE skipped_fires (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id TEXT NOT NULL REFERENCES tasks(id),
        fire_time TEXT NOT NULL,
        last_fire_time TEXT NOT NULL,
        count INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX skipped_by_task ON skipped_fires(task_id, fire_time);
    CREATE TABLE scheduler_lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pid INTEGER NOT NULL,
        pid_started REAL,
        host TEXT NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL
    );
    """,
    # 3: a scheduled task remembers `orchzip schedule --no-env` for all its runs.
    """
    ALTER TABLE tasks ADD COLUMN no_env INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: orchestrations uploaded to `orchzip serve`, as Wallaroo's MLOps API keeps them.
    # status: pending_packaging -> packaging -> ready | error (error holds the reason).
    """
    CREATE TABLE orchestrations (
        id TEXT PRIMARY KEY,
        workspace_id INTEGER NOT NULL,
        name TEXT,
        file_name TEXT NOT NULL,
        file_size INTEGER NOT NULL,
        sha TEXT NOT NULL,
        path TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        owner_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX orchestrations_by_workspace ON orchestrations(workspace_id, created_at);
    """,
    # 5: a pipeline lives in at most one workspace, as on Wallaroo; NULL is the default
    # workspace a task starts in. Deleting a workspace sends its pipelines back there.
    """
    ALTER TABLE pipelines ADD COLUMN workspace_id INTEGER REFERENCES workspaces(id) ON DELETE SET NULL;
    """,
    # 6: bounded run logs. log_bytes: all a run printed (in stored form); log_dropped_bytes:
    # how much of it its log left out; tasks.log_max_bytes: the cap its runs' logs keep.
    """
    ALTER TABLE runs ADD COLUMN log_bytes INTEGER;
    ALTER TABLE runs ADD COLUMN log_dropped_bytes INTEGER;
    ALTER TABLE tasks ADD COLUMN log_max_bytes INTEGER;
    """,
    # 7: the dashboard pages through tasks and runs newest first and counts runs by status
    # per task; these keep its pages fast with tens of thousands of runs.
    """
    CREATE INDEX tasks_by_created ON tasks(created_at);
    CREATE INDEX runs_by_created ON runs(created_at);
    CREATE INDEX runs_by_task_status ON runs(task_id, status);
    """,
    # 8: exactly once and truthful records. idempotency_key names a run's output across
    # retries (see runner.idempotency_key); note says how the status was settled from the
    # sinks' commit records ("already committed by run X", "committed before the kill");
    # runner_pid is the process that watches the run; source_sha is the sha256 of the
    # task's own immutable copy of its zip.
    """
    ALTER TABLE runs ADD COLUMN idempotency_key TEXT;
    ALTER TABLE runs ADD COLUMN note TEXT;
    ALTER TABLE runs ADD COLUMN runner_pid INTEGER;
    ALTER TABLE tasks ADD COLUMN source_sha TEXT;
    CREATE INDEX runs_by_key ON runs(idempotency_key);
    """,
    # 9: what an orchzip.yaml declares that has no other home (written by `orchzip apply`):
    # orchestration folders by name, and tasks by name. A scheduled task's settings live in
    # its row of tasks (task_id); a run-once task is a recipe `orchzip run NAME` starts.
    """
    CREATE TABLE project_orchestrations (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        workspace TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE project_tasks (
        name TEXT PRIMARY KEY,
        orchestration TEXT NOT NULL,
        task_id TEXT REFERENCES tasks(id),
        args TEXT NOT NULL DEFAULT '{}',
        timeout REAL,
        no_env INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # 10: the default workspace of each wallaroo SDK user of `orchzip serve` (the workspace
    # Client.get_current_workspace() gives before set_current_workspace), by the user id of
    # the SDK's credentials.
    """
    CREATE TABLE user_default_workspaces (
        user_id TEXT PRIMARY KEY,
        workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE
    );
    """,
    # 11: the Wallaroo release a task targets (its environment's SDK pins, its results' shape).
    """
    ALTER TABLE tasks ADD COLUMN wallaroo_version TEXT;
    """,
    # 12: models registered by name with integer versions (orchzip models upload), each a
    # stored copy under the state directory (path) with its sha256, and pipelines as a list of
    # model versions. A pipeline with no pipeline_steps rows is one ONNX step, its model_path.
    """
    CREATE TABLE models (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        framework TEXT NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        input_schema TEXT,
        output_schema TEXT,
        tensor_column TEXT,
        python TEXT,
        requirements TEXT,
        source_path TEXT,
        workspace_id INTEGER REFERENCES workspaces(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL,
        UNIQUE (name, version)
    );
    CREATE TABLE pipeline_steps (
        pipeline_id INTEGER NOT NULL REFERENCES pipelines(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        model_id INTEGER NOT NULL REFERENCES models(id),
        PRIMARY KEY (pipeline_id, position)
    );
    CREATE INDEX pipeline_steps_by_model ON pipeline_steps(model_id);
    """,
    # 13: what else an orchzip.yaml task declares (continuously and its restart policy, its log
    # cap, its Wallaroo release), as JSON: a run-once or continuous recipe has no row of tasks.
    """
    ALTER TABLE project_tasks ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    """,
    # 14: a model uploaded with --convert-to-onnx keeps what it was converted from (its
    # framework, and the sha256 of the file the user gave): its results follow its output
    # schema as the native model's do, and orchzip.yaml compares it with the file it names.
    """
    ALTER TABLE models ADD COLUMN converted_from TEXT;
    ALTER TABLE models ADD COLUMN source_sha256 TEXT;
    """,
]


class Store:
    """The state directory's database. Safe to share between threads of one process."""

    def __init__(self, state_dir, create=True):
        """:param create: False for commands that only read: a state that does not exist is
            then read as an empty one (in memory), and nothing is written to disk."""
        self.state_dir = os.path.abspath(state_dir)
        self.path = os.path.join(self.state_dir, DB_NAME)
        self.exists = create or os.path.isfile(self.path)
        if not self.exists:
            self._lock = threading.RLock()
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._migrate()
            return
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        fresh = not os.path.exists(self.path)
        if fresh:
            # Create the file owner-only before SQLite writes anything into it.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    def close(self):
        self._db.close()

    def dir_for(self, *parts):
        """A directory inside the state directory, created owner-only if missing."""
        path = os.path.join(self.state_dir, *parts)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    # -- plumbing -----------------------------------------------------------------------
    def _migrate(self):
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    def transaction(self):
        return _Transaction(self)

    def _query(self, sql, params=()):
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, params).fetchall()]

    def select(self, sql, params=()):
        """Rows of a read-only query, as dicts: for reports over the tables (the dashboard)."""
        return self._query(sql, params)

    def _one(self, sql, params, what):
        rows = self._query(sql, params)
        if not rows:
            raise NotFound(what)
        return rows[0]

    # -- workspaces -----------------------------------------------------------------------
    def create_workspace(self, name):
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("a workspace needs a non-empty name")
        try:
            with self.transaction() as db:
                db.execute("INSERT INTO workspaces(name, created_at) VALUES (?, ?)", (name, utcnow()))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"workspace {name!r} already exists") from None
        return self.get_workspace(name)

    def get_workspace(self, name=None, id=None):
        if id is not None:
            return self._one("SELECT * FROM workspaces WHERE id = ?", (id,), f"no workspace with id {id}")
        rows = self._query("SELECT * FROM workspaces WHERE name = ?", (name,))
        if not rows:
            known = ", ".join(w["name"] for w in self.list_workspaces()) or "none"
            raise NotFound(
                f"unknown workspace {name!r} (known: {known}); create it with: orchzip workspaces create {name}"
            )
        return rows[0]

    def list_workspaces(self):
        return self._query("SELECT * FROM workspaces ORDER BY id")

    def workspace_members(self, workspace_id):
        """``{"connections": [names], "pipelines": [names]}`` of one workspace."""
        connections = self._query(
            "SELECT c.name FROM connections c JOIN connection_workspaces cw ON cw.connection_id = c.id "
            "WHERE cw.workspace_id = ? ORDER BY c.name", (workspace_id,))
        pipelines = self._query("SELECT name FROM pipelines WHERE workspace_id = ? ORDER BY name", (workspace_id,))
        return {"connections": [r["name"] for r in connections], "pipelines": [r["name"] for r in pipelines]}

    def delete_workspace(self, name):
        """Delete a workspace; its connections stay (outside it), its pipelines go back to the default one.

        :raises ConfigError: while orchestrations uploaded to ``orchzip serve`` live in it.
        """
        workspace = self.get_workspace(name)
        orchestrations = self._query("SELECT id FROM orchestrations WHERE workspace_id = ?", (workspace["id"],))
        if orchestrations:
            raise ConfigError(
                f"workspace {name!r} holds {len(orchestrations)} uploaded orchestration(s); "
                f"a workspace with orchestrations cannot be deleted"
            )
        with self.transaction() as db:
            db.execute("DELETE FROM workspaces WHERE id = ?", (workspace["id"],))

    def default_workspace(self, user_id):
        """The default workspace of SDK user ``user_id`` (see migration 10), or None."""
        rows = self._query("SELECT w.* FROM workspaces w JOIN user_default_workspaces d ON d.workspace_id = w.id "
                           "WHERE d.user_id = ?", (user_id,))
        return rows[0] if rows else None

    def set_default_workspace(self, user_id, workspace_id):
        self.get_workspace(id=workspace_id)
        with self.transaction() as db:
            db.execute("INSERT INTO user_default_workspaces(user_id, workspace_id) VALUES (?, ?) "
                       "ON CONFLICT(user_id) DO UPDATE SET workspace_id = excluded.workspace_id", (user_id, workspace_id))

    # -- connections ----------------------------------------------------------------------
    def create_connection(self, name, type, details):
        """Store a connection after :func:`connection_schemas.validate` passed it (else it raises)."""
        kind = connection_schemas.validate(name, type, details)
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO connections(name, type, details, created_at) VALUES (?, ?, ?, ?)",
                    (name, kind, json.dumps(details, allow_nan=False), utcnow()),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(
                f"connection {name!r} already exists; delete it first: orchzip connections delete {name}"
            ) from None
        return self.get_connection(name)

    def get_connection(self, name=None, id=None):
        if id is not None:
            row = self._one("SELECT * FROM connections WHERE id = ?", (id,), f"no connection with id {id}")
        else:
            rows = self._query("SELECT * FROM connections WHERE name = ?", (name,))
            if not rows:
                from orchzip.errors import UnknownConnection
                raise UnknownConnection.from_args(name, [c["name"] for c in self.list_connections()])
            row = rows[0]
        return self._connection_row(row)

    def list_connections(self, workspace_id=None):
        if workspace_id is None:
            rows = self._query("SELECT * FROM connections ORDER BY name")
        else:
            rows = self._query(
                "SELECT c.* FROM connections c JOIN connection_workspaces cw ON cw.connection_id = c.id "
                "WHERE cw.workspace_id = ? ORDER BY c.name",
                (workspace_id,),
            )
        return [self._connection_row(r) for r in rows]

    def delete_connection(self, name):
        self.get_connection(name)
        with self.transaction() as db:
            db.execute("DELETE FROM connections WHERE name = ?", (name,))

    def add_connection_to_workspace(self, connection_id, workspace_id):
        self.get_connection(id=connection_id)
        self.get_workspace(id=workspace_id)
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO connection_workspaces(connection_id, workspace_id) VALUES (?, ?)",
                (connection_id, workspace_id),
            )

    def remove_connection_from_workspace(self, connection_id, workspace_id):
        with self.transaction() as db:
            db.execute(
                "DELETE FROM connection_workspaces WHERE connection_id = ? AND workspace_id = ?",
                (connection_id, workspace_id),
            )

    def update_connection(self, name, type, details):
        """Change a connection's type and details in place (its id and workspaces stay)."""
        self.get_connection(name)
        kind = connection_schemas.validate(name, type, details)
        with self.transaction() as db:
            db.execute("UPDATE connections SET type = ?, details = ? WHERE name = ?",
                       (kind, json.dumps(details, allow_nan=False), name))
        return self.get_connection(name)

    def _connection_row(self, row):
        # Rows stored before details were validated may hold anything: decode, never raise.
        row["details"], problem = connection_schemas.decode_details(row["details"])
        if not problem:  # stored before its type's fields were checked: say so, keep the details
            try:
                connection_schemas.validate(row["name"], row["type"], row["details"])
            except ConfigError as err:
                problem = str(err)
        if problem:
            row["details_error"] = f"{problem}; delete and create it again: orchzip connections delete {row['name']}"
        row["workspace_names"] = [
            r["name"]
            for r in self._query(
                "SELECT w.name FROM workspaces w JOIN connection_workspaces cw ON cw.workspace_id = w.id "
                "WHERE cw.connection_id = ? ORDER BY w.name",
                (row["id"],),
            )
        ]
        return row

    # -- pipelines ------------------------------------------------------------------------
    _PIPELINE_SELECT = (
        "SELECT p.*, w.name AS workspace_name FROM pipelines p LEFT JOIN workspaces w ON w.id = p.workspace_id"
    )

    def create_pipeline(self, name, model_path=None, tensor_column=None, replace=False, workspace_id=None,
                        steps=None):
        """Store a pipeline once its name is sound and its model loads (checked now, not at the first run).

        :param model_path: an ONNX file: the pipeline is that one model, read from where it is.
        :param steps: instead of ``model_path``, registered model versions (rows of
            ``runtime.registry``), in order: each step's outputs are the next one's inputs.
        """
        if not isinstance(name, str) or not name.strip() or any(not c.isprintable() for c in name):
            raise ConfigError("a pipeline needs a non-empty name of printable characters (no line breaks)")
        if isinstance(tensor_column, str) and not tensor_column.strip():
            raise ConfigError("--tensor-column must not be empty; leave it out to use the column 'tensor'")
        if steps:
            model_path = steps[0]["path"]  # what readers from before steps existed find
        elif model_path is None:
            raise ConfigError(f"pipeline {name!r} needs a model: --model FILE.onnx, or --step MODEL[:VERSION]")
        else:
            model_path = check_model_file(model_path, name)
        if workspace_id is not None:
            self.get_workspace(id=workspace_id)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            with self.transaction() as db:
                if replace:
                    db.execute("DELETE FROM pipeline_steps WHERE pipeline_id IN "
                               "(SELECT id FROM pipelines WHERE name = ?)", (name,))
                pipeline_id = db.execute(
                    f"{verb} INTO pipelines(name, model_path, tensor_column, created_at, workspace_id) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, model_path, tensor_column, utcnow(), workspace_id),
                ).lastrowid
                db.executemany("INSERT INTO pipeline_steps(pipeline_id, position, model_id) VALUES (?, ?, ?)",
                               [(pipeline_id, i, step["id"]) for i, step in enumerate(steps or ())])
        except sqlite3.IntegrityError:
            raise AlreadyExists(
                f"pipeline {name!r} already exists; delete it first: orchzip pipelines delete {name}"
            ) from None
        return self.get_pipeline(name)

    def get_pipeline(self, name):
        rows = self._query(f"{self._PIPELINE_SELECT} WHERE p.name = ?", (name,))
        if not rows:
            from orchzip.errors import UnknownPipeline
            raise UnknownPipeline.from_args(name, [p["name"] for p in self.list_pipelines()])
        return rows[0]

    def list_pipelines(self, workspace_id=None):
        if workspace_id is None:
            return self._query(f"{self._PIPELINE_SELECT} ORDER BY p.name")
        return self._query(f"{self._PIPELINE_SELECT} WHERE p.workspace_id = ? ORDER BY p.name", (workspace_id,))

    def set_pipeline_workspace(self, name, workspace_id):
        """Move pipeline ``name`` into a workspace (``None``: the default one); a pipeline is in one."""
        self.get_pipeline(name)
        if workspace_id is not None:
            self.get_workspace(id=workspace_id)
        with self.transaction() as db:
            db.execute("UPDATE pipelines SET workspace_id = ? WHERE name = ?", (workspace_id, name))
        return self.get_pipeline(name)

    def delete_pipeline(self, name):
        self.get_pipeline(name)
        with self.transaction() as db:
            db.execute("DELETE FROM pipelines WHERE name = ?", (name,))

    # -- tasks and runs -------------------------------------------------------------------
    def create_task(self, kind, source, args=None, name=None, **fields):
        now = utcnow()
        task = dict(
            id=str(uuid.uuid4()), name=name, kind=kind, status="pending", source=source,
            args=json.dumps(args or {}), created_at=now, updated_at=now, **fields,
        )
        columns = ", ".join(task)
        with self.transaction() as db:
            db.execute(f"INSERT INTO tasks({columns}) VALUES ({', '.join('?' * len(task))})", tuple(task.values()))
        return self.get_task(task["id"])

    def get_task(self, task_id):
        rows = self._query("SELECT * FROM tasks WHERE id = ? OR id LIKE ? ORDER BY id = ? DESC", (task_id, f"{task_id}%", task_id))
        if not rows:
            raise NotFound(f"no task with id {task_id!r}; list them with: orchzip tasks list")
        if len(rows) > 1 and rows[0]["id"] != task_id:
            raise ConfigError(f"task id {task_id!r} is ambiguous; give more characters")
        return self._task_row(rows[0])

    def list_tasks(self, kind=None):
        if kind:
            rows = self._query("SELECT * FROM tasks WHERE kind = ? ORDER BY created_at", (kind,))
        else:
            rows = self._query("SELECT * FROM tasks ORDER BY created_at")
        return [self._task_row(r) for r in rows]

    def update_task(self, task_id, **fields):
        self._update("tasks", task_id, fields)
        return self.get_task(task_id)

    def _task_row(self, row):
        row["args"] = json.loads(row["args"] or "{}")
        return row

    def create_run(self, task_id, **fields):
        now = utcnow()
        run = dict(id=str(uuid.uuid4()), task_id=task_id, status="running", created_at=now, updated_at=now, **fields)
        with self.transaction() as db:
            db.execute(
                f"INSERT INTO runs({', '.join(run)}) VALUES ({', '.join('?' * len(run))})", tuple(run.values())
            )
        return self.get_run(run["id"])

    def update_run(self, run_id, **fields):
        self._update("runs", run_id, fields)
        return self.get_run(run_id)

    def get_run(self, run_id):
        rows = self._query("SELECT * FROM runs WHERE id = ? OR id LIKE ? ORDER BY id = ? DESC", (run_id, f"{run_id}%", run_id))
        if not rows:
            raise NotFound(f"no run with id {run_id!r}; list them with: orchzip runs list")
        if len(rows) > 1 and rows[0]["id"] != run_id:
            raise ConfigError(f"run id {run_id!r} is ambiguous; give more characters")
        return rows[0]

    def list_runs(self, task_id=None, status=None, limit=None):
        sql, params = "SELECT * FROM runs WHERE 1=1", []
        if task_id:
            sql += " AND task_id = ?"
            params.append(task_id)
        if status:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._query(sql, params)

    def prune_runs(self, keep=None, before=None, dry_run=False):
        """Forget ended runs: all but the newest ``keep`` per task name (each `orchzip run` is a
        task of its own, so runs group by name), and/or those created
        before ``before`` (a UTC ISO time). Their records and run folders (logs, work files) go.
        A running run is never pruned. Returns the pruned runs, oldest first.
        """
        if keep is None and before is None:
            raise ConfigError("say what to prune: --keep N (runs per task) and/or --older-than DAYS")
        if keep is not None and keep < 0:
            raise ConfigError(f"--keep must be 0 or more runs, not {keep}")
        ranked = """SELECT runs.*, ROW_NUMBER() OVER (PARTITION BY tasks.name
                                                      ORDER BY runs.created_at DESC, runs.rowid DESC) AS newer
                    FROM runs JOIN tasks ON tasks.id = runs.task_id"""
        sql, params = f"SELECT * FROM ({ranked}) WHERE status != 'running' AND (0", []
        if keep is not None:
            sql += " OR newer > ?"
            params.append(keep)
        if before is not None:
            sql += " OR created_at < ?"
            params.append(before)
        doomed = self._query(sql + ") ORDER BY created_at", params)
        for run in doomed:
            run.pop("newer", None)
        if dry_run or not doomed:
            return doomed
        with self.transaction() as db:
            db.executemany("DELETE FROM runs WHERE id = ? AND status != 'running'", [(r["id"],) for r in doomed])
        for run in doomed:
            # After the records: a folder without a record is only litter, a record without its folder a lie.
            shutil.rmtree(os.path.join(self.state_dir, "runs", run["id"]), ignore_errors=True)
        return doomed

    # -- scheduled tasks ----------------------------------------------------------------
    def claim_fire(self, task_id, expected_next, next_fire_at, claimed_fire_at=None, skipped=()):
        """Move a scheduled task's next fire on, atomically; False if someone else moved it.

        :param expected_next: the ``next_fire_at`` the caller decided from (compare-and-set).
        :param claimed_fire_at: a fire whose run is about to start; cleared by ``clear_claim``.
        :param skipped: ``(fire_time, last_fire_time, count, reason)`` rows to record with it.
        """
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE tasks SET next_fire_at = ?, claimed_fire_at = ?, updated_at = ? "
                "WHERE id = ? AND next_fire_at IS ? AND paused = 0 AND status NOT IN ('pending_kill', 'killed')",
                (next_fire_at, claimed_fire_at, utcnow(), task_id, expected_next),
            ).rowcount
            if changed:
                for row in skipped:
                    self._insert_skipped(db, task_id, *row)
        return bool(changed)

    def clear_claim(self, task_id):
        with self.transaction() as db:
            db.execute("UPDATE tasks SET claimed_fire_at = NULL WHERE id = ?", (task_id,))

    def take_retry(self, task_id, retry_at):
        """Clear a task's pending retry if it is still ``retry_at`` and the task may run."""
        with self.transaction() as db:
            return bool(db.execute(
                "UPDATE tasks SET retry_at = NULL, updated_at = ? WHERE id = ? AND retry_at = ? "
                "AND paused = 0 AND status IN ('pending', 'started')",
                (utcnow(), task_id, retry_at),
            ).rowcount)

    def record_skipped(self, task_id, fire_time, reason, last_fire_time=None, count=1):
        with self.transaction() as db:
            self._insert_skipped(db, task_id, fire_time, last_fire_time or fire_time, count, reason)

    def _insert_skipped(self, db, task_id, fire_time, last_fire_time, count, reason):
        db.execute(
            "INSERT INTO skipped_fires(task_id, fire_time, last_fire_time, count, reason, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (task_id, fire_time, last_fire_time, count, reason, utcnow()),
        )

    def list_skipped(self, task_id, limit=None):
        sql = "SELECT * FROM skipped_fires WHERE task_id = ? ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._query(sql, (task_id,))

    def running_runs(self, kind=None):
        """Runs recorded ``running``, optionally only those of tasks of ``kind``."""
        sql = "SELECT r.* FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.status = 'running'"
        params = ()
        if kind:
            sql, params = sql + " AND t.kind = ?", (kind,)
        return self._query(sql + " ORDER BY r.created_at", params)

    # -- what an orchzip.yaml declared (orchzip apply) ------------------------------------
    def put_project_orchestration(self, name, path, workspace=None):
        now = utcnow()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO project_orchestrations(name, path, workspace, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET path = excluded.path, "
                "workspace = excluded.workspace, updated_at = excluded.updated_at",
                (name, path, workspace, now, now),
            )

    def list_project_orchestrations(self):
        return self._query("SELECT * FROM project_orchestrations ORDER BY name")

    def delete_project_orchestration(self, name):
        with self.transaction() as db:
            db.execute("DELETE FROM project_orchestrations WHERE name = ?", (name,))

    def put_project_task(self, name, orchestration, task_id=None, args=None, timeout=None, no_env=False,
                         options=None):
        now = utcnow()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO project_tasks(name, orchestration, task_id, args, timeout, no_env, options, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "orchestration = excluded.orchestration, task_id = excluded.task_id, args = excluded.args, "
                "timeout = excluded.timeout, no_env = excluded.no_env, options = excluded.options, "
                "updated_at = excluded.updated_at",
                (name, orchestration, task_id, json.dumps(args or {}), timeout, 1 if no_env else 0,
                 json.dumps(options or {}), now, now),
            )

    def list_project_tasks(self):
        return [dict(r, args=json.loads(r["args"] or "{}"), options=json.loads(r["options"] or "{}"))
                for r in self._query("SELECT * FROM project_tasks ORDER BY name")]

    def delete_project_task(self, name):
        with self.transaction() as db:
            db.execute("DELETE FROM project_tasks WHERE name = ?", (name,))

    # -- the scheduler's lease: one scheduler per state directory --------------------------
    def acquire_lease(self, pid, pid_started, host, holder_alive):
        """Take the scheduler lease; returns None when taken, else the live holder's row.

        :param holder_alive: called with the current holder's row; a dead holder's lease is
            taken over.
        """
        with self.transaction() as db:
            rows = [dict(r) for r in db.execute("SELECT * FROM scheduler_lease WHERE id = 1")]
            if rows and rows[0]["pid"] != pid and holder_alive(rows[0]):
                return rows[0]
            now = utcnow()
            db.execute(
                "INSERT OR REPLACE INTO scheduler_lease(id, pid, pid_started, host, started_at, heartbeat_at) "
                "VALUES (1, ?, ?, ?, ?, ?)",
                (pid, pid_started, host, now, now),
            )
        return None

    def get_lease(self):
        rows = self._query("SELECT * FROM scheduler_lease WHERE id = 1")
        return rows[0] if rows else None

    def heartbeat_lease(self, pid):
        with self.transaction() as db:
            db.execute("UPDATE scheduler_lease SET heartbeat_at = ? WHERE id = 1 AND pid = ?", (utcnow(), pid))

    def release_lease(self, pid):
        with self.transaction() as db:
            db.execute("DELETE FROM scheduler_lease WHERE id = 1 AND pid = ?", (pid,))

    # -- orchestrations (uploaded to the local API server) --------------------------------
    def create_orchestration(self, workspace_id, name, file_name, file_size, sha, path, owner_id="local",
                             orch_id=None):
        """Record an uploaded orchestration zip, status ``pending_packaging``; returns its row."""
        self.get_workspace(id=workspace_id)
        now = utcnow()
        row = dict(id=orch_id or str(uuid.uuid4()), workspace_id=workspace_id, name=name, file_name=file_name,
                   file_size=file_size, sha=sha, path=path, status="pending_packaging", owner_id=owner_id,
                   created_at=now, updated_at=now)
        with self.transaction() as db:
            db.execute(f"INSERT INTO orchestrations({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))
        return self.get_orchestration(row["id"])

    def get_orchestration(self, orch_id):
        return self._one("SELECT * FROM orchestrations WHERE id = ?", (str(orch_id),),
                         f"no orchestration with id {orch_id!r}")

    def list_orchestrations(self, workspace_id=None, status=None):
        sql, params = "SELECT * FROM orchestrations WHERE 1=1", []
        if workspace_id is not None:
            sql += " AND workspace_id = ?"
            params.append(workspace_id)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        return self._query(sql + " ORDER BY created_at, rowid", params)

    def update_orchestration(self, orch_id, **fields):
        self._update("orchestrations", orch_id, fields)
        return self.get_orchestration(orch_id)

    def _update(self, table, row_id, fields):
        if not fields:
            return
        fields = dict(fields, updated_at=utcnow())
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", (*fields.values(), row_id))


def check_model_file(model_path, pipeline):
    """The absolute path of a model file that onnxruntime loads, or one line saying why not."""
    from orchzip_shim.errors import ModelError
    from orchzip_shim.models import OnnxModel

    model_path = os.path.abspath(os.path.expanduser(model_path))
    fix = "give the path of an .onnx model file"
    if os.path.isdir(model_path):
        raise ConfigError(f"model {model_path} is a folder, not a file; {fix}")
    try:
        with open(model_path, "rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise ConfigError(f"model file {model_path} does not exist; {fix}") from None
    except OSError as err:
        raise ConfigError(f"cannot read model file {model_path} ({err.strerror}); {fix}") from None
    if not head:
        raise ConfigError(f"model file {model_path} is empty; {fix}")
    if head == b"PK\x03\x04":
        raise ConfigError(f"model file {model_path} is a zip, not an ONNX model; give the .onnx file inside it")
    try:
        OnnxModel(model_path, name=pipeline)
    except ModelError as err:
        detail = str(err).split(": ", 1)[-1] if "cannot load model" in str(err) else str(err)
        raise ConfigError(f"model file {model_path} is not an ONNX model orchzip can run ({detail[:200]}); {fix}") from None
    return model_path


class _Transaction:
    """``with store.transaction() as db:`` runs the block in one IMMEDIATE transaction."""

    def __init__(self, store):
        self._store = store

    def __enter__(self):
        self._store._lock.acquire()
        try:
            self._store._db.execute("BEGIN IMMEDIATE")
        except Exception:
            self._store._lock.release()
            raise
        return self._store._db

    def __exit__(self, exc_type, exc, tb):
        try:
            self._store._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._store._lock.release()
        return False


