"""The project file, ``orchzip.yaml``: a project's workspaces, connections, pipelines,
orchestrations and tasks, declared in one file kept in git.

- :func:`find_root`: the project a directory belongs to, found as git finds its repository;
- :func:`load`: read and validate a file (errors name file, line and key);
- :func:`plan` / :func:`apply`: what would change in a state, and making the change;
- :func:`plan_remote` / :func:`apply_remote`: the same for a Wallaroo instance (or ``orchzip serve``);
- :func:`export`: a state written out as a project file;
- :func:`init`: a starter project that runs as it is.

Importing this package is cheap (every command looks for the project root); the schema
library loads when a file is read.
"""

import os

__all__ = ["PROJECT_FILE", "STATE_DIR_NAME", "find_root", "state_dir_for", "load", "plan", "apply", "export", "init",
           "run_recipe", "plan_remote", "apply_remote"]

PROJECT_FILE = "orchzip.yaml"
STATE_DIR_NAME = ".orchzip"


def find_root(start):
    """The nearest folder at or above ``start`` holding ``orchzip.yaml`` or ``.orchzip``, or None."""
    folder = os.path.abspath(start)
    while True:
        if os.path.isfile(os.path.join(folder, PROJECT_FILE)) or os.path.isdir(os.path.join(folder, STATE_DIR_NAME)):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def state_dir_for(start):
    """The state directory for commands run in ``start``: its project's, else ``start/.orchzip``."""
    return os.path.join(find_root(start) or os.path.abspath(start), STATE_DIR_NAME)


def load(path):
    """The validated :class:`~orchzip.runtime.project._schema.Project` in ``path``."""
    from orchzip.runtime.project._schema import load_project
    return load_project(path)


def plan(store, path):
    """The :class:`~orchzip.runtime.project._plan.Plan` that makes ``store`` match the file at
    ``path`` (``store`` None: a state that does not exist yet). Close the plan when done."""
    from orchzip.runtime.project._plan import make_plan
    return make_plan(store, load(path), os.path.dirname(os.path.abspath(path)))


def apply(store, the_plan, on_env_progress=None):
    """Carry out ``the_plan`` on ``store``.

    :param on_env_progress: called with each line of progress while a scheduled task's
        environment builds.
    """
    from orchzip.runtime.project._plan import apply_plan
    apply_plan(store, the_plan, on_env_progress=on_env_progress)


def plan_remote(client, path, environ=None):
    """The :class:`~orchzip.runtime.project._remote.RemotePlan` that makes the instance behind
    ``client`` (an :class:`orchzip.mlops.Client`) match the file at ``path``. Close it when done.

    :param environ: where ``${VAR}`` in connection details are read (default: ``os.environ``).
    """
    from orchzip.runtime.project._remote import make_remote_plan
    return make_remote_plan(client, load(path), os.path.dirname(os.path.abspath(path)), environ)


def apply_remote(client, the_plan, wait_timeout=900.0, on_progress=None):
    """Carry out a remote plan; returns ``{task name: task id}`` of the tasks it started.

    :param wait_timeout: seconds to wait at most for each uploaded orchestration to be ready.
    :param on_progress: called with one line per step done.
    """
    from orchzip.runtime.project._remote import apply_remote_plan
    return apply_remote_plan(client, the_plan, wait_timeout=wait_timeout, on_progress=on_progress)


def export(store, path, include_secrets=False):
    """``(text, notes)``: the YAML for ``store``'s state as a file at ``path``, and notes on
    secrets written as ``${VAR}`` references."""
    from orchzip.runtime.project._export import dump_project, export_project
    data, notes = export_project(store, os.path.dirname(os.path.abspath(path)), include_secrets)
    return dump_project(data), notes


def run_recipe(state_dir, name):
    """What ``orchzip run NAME`` runs for a task or orchestration the state's project declares.

    :returns: a dict of ``target`` (the orchestration folder or zip), ``args``, ``timeout``,
        ``no_env``, ``continuously``, ``restart`` (a continuous task's policy, else None),
        ``log_max_bytes`` and ``wallaroo_version``; a declared task's own settings, an
        orchestration's none.
    :raises ConfigError: naming the state it looked in and the names it knows. A state that
        does not exist is not created.
    """
    from orchzip.errors import ConfigError
    from orchzip.runtime.store import DB_NAME, Store
    tasks, orchestrations, store = {}, {}, None
    if os.path.isfile(os.path.join(state_dir, DB_NAME)):
        store = Store(state_dir)
        orchestrations = {o["name"]: o["path"] for o in store.list_project_orchestrations()}
        tasks = {t["name"]: t for t in store.list_project_tasks()}
    none = {"continuously": False, "restart": None, "log_max_bytes": None, "wallaroo_version": None}
    if name in tasks:
        task = tasks[name]
        options = dict(none, **task["options"])
        if task["task_id"]:  # scheduled: its settings live in its row of tasks
            row = store.get_task(task["task_id"])
            task = dict(task, **{k: row[k] for k in ("args", "timeout", "no_env")})
            options.update(log_max_bytes=row.get("log_max_bytes"), wallaroo_version=row.get("wallaroo_version"))
        return {"target": orchestrations[task["orchestration"]], "args": task["args"], "timeout": task["timeout"],
                "no_env": bool(task["no_env"]), **options}
    if name in orchestrations:
        return {"target": orchestrations[name], "args": {}, "timeout": None, "no_env": False, **none}
    if store is None:
        raise ConfigError(f"{name!r} is not a zip or a folder, and there is no orchzip state at "
                          f"{os.path.abspath(state_dir)} to find a task of that name in; give a path, or "
                          "declare the task in orchzip.yaml and run: orchzip apply")
    raise ConfigError(
        f"{name!r} is not a zip, a folder, or a task or orchestration of the project in {store.state_dir} "
        f"(tasks: {', '.join(sorted(tasks)) or 'none'}; orchestrations: {', '.join(sorted(orchestrations)) or 'none'}); "
        "declare it in orchzip.yaml and run: orchzip apply"
    )


def init(folder):
    """Write a starter project into ``folder``; returns the paths written."""
    from orchzip.runtime.project._starter import write_starter
    return write_starter(folder)
