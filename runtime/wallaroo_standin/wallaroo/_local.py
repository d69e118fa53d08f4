"""What the stand-in shares: the task context of the run, errors, and the unsupported-call guard.

Everything the stand-in knows comes from the context file the orchzip runner writes for a run
(``ORCHZIP_CONTEXT``: args, connections, local pipelines, workspaces, and the targeted
Wallaroo release's name of the results' check count). What a task creates
while it runs (workspaces, pipelines, uploaded models) lives in this process only, in one
``LocalState`` that every ``Client`` of the process shares, as every client of one Wallaroo
instance sees the same server.
"""

import datetime
import json
import os

from orchzip_shim.errors import ConfigError

CONTEXT_ENV = "ORCHZIP_CONTEXT"
DEFAULT_WORKSPACE = "default"


class NotAvailableLocally(ConfigError, AttributeError):
    """A part of the wallaroo SDK that the local stand-in does not play.

    It is an ``AttributeError`` too, so ``hasattr`` and ``getattr(obj, name, default)`` keep
    working; uncaught, the task prints it as one ``orchzip: error:`` line.
    """

    @classmethod
    def from_args(cls, call, supported):
        listed = ", ".join(sorted(supported))
        return cls(
            f"{call} is not available in an orchzip local run (supported: {listed}); "
            f"run this orchestration on Wallaroo to use it"
        )


class ModuleNotAvailableLocally(ConfigError, ModuleNotFoundError):
    """An import of a wallaroo submodule the stand-in does not have."""


def not_deployed(name, call):
    """The SDK's ``RuntimeError`` for inferring through a pipeline that is not deployed."""
    return sdk_error(f"Pipeline {name} is not deployed", f"call pipeline.deploy() before pipeline.{call}()",
                     RuntimeError)


class InferenceError(ConfigError):
    """An inference was refused (locally: the rows are not a DataFrame or an Arrow table)."""


def sdk_error(text, hint, kind=Exception):
    """The exception the SDK raises (by default a plain ``Exception`` with ``text``).

    ``str(err)`` is exactly the SDK's, so code that catches it sees what it sees on Wallaroo;
    ``hint`` says what to do locally, and the task bootstrap prints both as one line when
    nothing catches it.
    """
    err = kind(text)
    err.orchzip_one_line = True
    err.orchzip_hint = hint
    return err


def public_names(cls):
    return [n for n in dir(cls) if not n.startswith("_")]


class LocalSurface:
    """Base of the stand-in's classes: an unknown public attribute is a clear error."""

    _surface_name = "wallaroo"

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise NotAvailableLocally.from_args(f"{self._surface_name}.{name}", public_names(type(self)))


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


class LocalState:
    """The run's context plus what this process created; shared by every Client.

    Workspaces, pipelines and connection memberships start as orchzip's state has them (the
    context); what the task changes stays in this process. Pipelines outside every workspace
    are in the default workspace, the one a client starts in.
    """

    def __init__(self, context):
        self.context = context
        self.created_at = utcnow()
        self.anomaly_column = context.get("anomaly_column") or "anomaly.count"
        self.workspaces = {}  # name -> workspace record dict
        self.pipelines = {}  # name -> pipeline record dict
        self.models = {}  # name -> list of Model (versions, newest last)
        self.connection_workspaces = {}  # connection name -> set of workspace names
        self._model_runners = {}
        self._next_ids = {"workspace": 1, "pipeline": 1, "model": 1}
        for entry in context.get("workspaces", []):
            self._add_known_workspace(entry)
        self.default_workspace = self.add_workspace(DEFAULT_WORKSPACE)
        self.current_workspace = None
        for name, entry in (context.get("connections") or {}).items():
            self.connection_workspaces[name] = set(entry.get("workspace_names") or [])
        for spec in context.get("models") or ():
            self.models.setdefault(spec["name"], []).append(self._add_known_model(spec))
        for name, entry in sorted((context.get("pipelines") or {}).items()):
            self._add_known_pipeline(name, entry)

    def next_id(self, kind):
        value = self._next_ids[kind]
        self._next_ids[kind] += 1
        return value

    def _add_known_workspace(self, entry):
        if isinstance(entry, str):  # a context written before workspaces carried ids
            entry = {"name": entry}
        record = {"id": entry.get("id") or self.next_id("workspace"), "name": entry["name"],
                  "created_at": entry.get("created_at") or utcnow()}
        self.workspaces[record["name"]] = record
        self._next_ids["workspace"] = max(self._next_ids["workspace"], int(record["id"]) + 1)

    def add_workspace(self, name):
        if name not in self.workspaces:
            self.workspaces[name] = {"id": self.next_id("workspace"), "name": name, "created_at": utcnow()}
        return self.workspaces[name]

    def workspace_of(self, name):
        """The record of workspace ``name``; None and unknown names mean the default one."""
        return self.workspaces.get(name) if name else self.default_workspace

    def current(self):
        return self.current_workspace or self.default_workspace

    def _add_known_model(self, spec):
        from .model import Model
        model = Model(spec["name"], spec["path"], self.next_id("model"), tensor_column=spec.get("tensor_column"),
                      version=spec.get("version") or "1", spec=spec)
        model.workspace_id = (self.workspace_of(spec.get("workspace")) or self.default_workspace)["id"]
        return model

    def _add_known_pipeline(self, name, entry):
        steps = entry.get("steps") or [{"name": os.path.splitext(os.path.basename(entry["model"]))[0],
                                        "path": entry["model"], "framework": "onnx",
                                        "tensor_column": entry.get("tensor_column")}]
        workspace = self.workspace_of(entry.get("workspace")) or self.default_workspace
        models = [self._registered(spec) or self._add_known_model(dict(spec, workspace=entry.get("workspace")))
                  for spec in steps]
        self.new_pipeline(name, models, deployed=True, workspace=workspace)

    def _registered(self, spec):
        """The registered model version a step spec names (as wl.get_model gives it), if any."""
        for model in self.models.get(spec.get("name"), ()):
            if spec.get("version") and model.version() == str(spec["version"]) and model.path == spec["path"]:
                if spec.get("tensor_column") != model.tensor_column:
                    return None  # the pipeline's own input column: a model of its own
                return model
        return None

    def new_pipeline(self, name, steps, deployed, workspace):
        record = {"id": self.next_id("pipeline"), "name": name, "steps": steps, "deployed": deployed,
                  "workspace": workspace, "created_at": utcnow()}
        self.pipelines[name] = record
        return record

    def pipelines_in(self, workspace):
        return [r for r in self.pipelines.values() if r["workspace"]["id"] == workspace["id"]]

    def runner(self, pipeline_name, steps):
        """The shim's model of a pipeline's steps (Model objects), loaded once per process and steps."""
        specs = [m.spec() for m in steps]
        key = tuple((s["framework"], s["path"], s.get("tensor_column")) for s in specs)
        if key not in self._model_runners:
            from orchzip_shim.pipelines import local_pipeline
            self._model_runners[key] = local_pipeline(pipeline_name, {"steps": specs}, self.anomaly_column)
        return self._model_runners[key]

    def close_runners(self):
        for runner in self._model_runners.values():
            runner.close()
        self._model_runners.clear()


_STATE = None


def state():
    """The process's LocalState, read from the run's context file on first use."""
    global _STATE
    if _STATE is None:
        _STATE = LocalState(read_context())
    return _STATE


def read_context():
    path = os.environ.get(CONTEXT_ENV)
    if not path:
        raise ConfigError(
            "this is orchzip's local stand-in of the wallaroo SDK and it works only in a task "
            "started by 'orchzip run' (ORCHZIP_CONTEXT is not set)"
        )
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the task context file {path}: {err}") from None
