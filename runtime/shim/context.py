"""Where a task finds its arguments, named connections and named pipelines.

The same main.py runs in three places, and this module hides which one it is in:

- an orchzip local run: the runner writes a context file (args, connections, pipelines)
  and points ``ORCHZIP_CONTEXT`` at it;
- a Wallaroo task (``WALLAROO_TASK_ID`` set): everything comes through the wallaroo SDK
  (``task_args()``, ``get_connection(name)``, ``pipelines_by_name(name)``);
- ``ORCHZIP_SHIM_MODE=sdk`` forces the SDK path even in a local run, which is how orchzip
  checks the in-Wallaroo path against its local stand-in of the SDK.
"""

import json
import os
import re

from .errors import ConfigError, UnknownConnection, UnknownPipeline

__all__ = ["Connection", "TaskContext", "current_task", "expand_env"]

CONTEXT_ENV = "ORCHZIP_CONTEXT"
MODE_ENV = "ORCHZIP_SHIM_MODE"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value, environ=None):
    """Replace ``${VAR}`` in every string inside ``value`` (dicts and lists included).

    Connection details keep the reference in the store; the value is read only here, at run
    time, so secrets never sit in orchzip's state files.
    """
    environ = os.environ if environ is None else environ
    if isinstance(value, str):
        def lookup(match):
            name = match.group(1)
            if name not in environ:
                raise ConfigError(
                    f"connection details refer to ${{{name}}} but the environment variable "
                    f"{name} is not set; export it before the run"
                )
            return environ[name]
        return _ENV_REF.sub(lookup, value)
    if isinstance(value, dict):
        return {k: expand_env(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ) for v in value]
    return value


class Connection:
    """A named data connection: a type (DUCKDB, FILE, BIGQUERY, HTTP, ...) and its details."""

    def __init__(self, name, type, details):
        self.name = name
        self.type = str(type).upper()
        self.details = dict(details or {})

    def __repr__(self):
        # Details may hold secrets: never show them.
        return f"Connection(name={self.name!r}, type={self.type!r})"

    def source(self, **options):
        """A reader of this connection's rows as Arrow record batches (see connectors)."""
        from .connectors import open_source
        return open_source(self, **options)

    def sink(self, **options):
        """An all-or-nothing writer of Arrow record batches into this connection."""
        from .connectors import open_sink
        return open_sink(self, **options)


class TaskContext:
    """What one task run can see: its args, connections and pipelines by name."""

    def __init__(self, args, resolve_connection, resolve_pipeline, where):
        self.args = dict(args or {})
        self._resolve_connection = resolve_connection
        self._resolve_pipeline = resolve_pipeline
        self.where = where  # "local" or "wallaroo": for logs and tests

    @property
    def idempotency_key(self):
        """What names this run's output across retries (the same for every retry of one fire).

        Sinks record it in their ledgers with the data, so a retried run writes once. Locally
        the runner sets it; on Wallaroo it is the ``run_id`` task arg when given, else None.
        """
        from .commits import idempotency_key
        run_id = self.args.get("run_id")
        return idempotency_key() or (str(run_id) if run_id not in (None, "") else None)

    def connection(self, name):
        """The named connection, its ``${VAR}`` references expanded from the environment."""
        return self._resolve_connection(name)

    def pipeline(self, name):
        """The named pipeline as a model: ``infer_batch(batch) -> batch`` (see models)."""
        return self._resolve_pipeline(name)

    @classmethod
    def from_local_file(cls, path):
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read the task context file {path}: {err}") from None
        return cls.from_local_dict(data)

    @classmethod
    def from_local_dict(cls, data):
        connections = data.get("connections", {})
        pipelines = data.get("pipelines", {})

        def resolve_connection(name):
            if name not in connections:
                raise UnknownConnection.from_args(name, connections)
            entry = connections[name]
            return Connection(name, entry["type"], expand_env(entry.get("details", {})))

        def resolve_pipeline(name):
            if name not in pipelines:
                raise UnknownPipeline.from_args(name, pipelines)
            from .pipelines import local_pipeline
            return local_pipeline(name, pipelines[name], data.get("anomaly_column"))

        return cls(data.get("args", {}), resolve_connection, resolve_pipeline, "local")

    @classmethod
    def from_wallaroo_sdk(cls):
        try:
            import wallaroo
        except ImportError:
            raise ConfigError(
                "WALLAROO_TASK_ID is set but the wallaroo SDK cannot be imported; "
                "run the task on Wallaroo or with: orchzip run"
            ) from None
        client = wallaroo.Client()

        def resolve_connection(name):
            try:
                conn = client.get_connection(name)
            except Exception as err:  # the SDK raises several types for a missing name
                raise ConfigError(f"cannot get connection {name!r} from Wallaroo: {err}") from None
            return Connection(name, conn.connection_type(), conn.details())

        def resolve_pipeline(name):
            found = client.pipelines_by_name(name)
            if not found:
                raise UnknownPipeline.from_args(name, [])
            from .models import SdkPipelineModel
            return SdkPipelineModel(name, found[0])

        return cls(client.task_args(), resolve_connection, resolve_pipeline, "wallaroo")


def current_task():
    """The context of the task this process runs as (see the module docstring)."""
    mode = os.environ.get(MODE_ENV, "")
    if mode != "sdk" and os.environ.get(CONTEXT_ENV):
        return TaskContext.from_local_file(os.environ[CONTEXT_ENV])
    if os.environ.get("WALLAROO_TASK_ID"):
        return TaskContext.from_wallaroo_sdk()
    raise ConfigError(
        "not running as a task: run this orchestration with 'orchzip run FOLDER_OR_ZIP' "
        "(or on Wallaroo)"
    )
