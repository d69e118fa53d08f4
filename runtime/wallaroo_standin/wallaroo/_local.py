"""What the stand-in shares: the task context of the run, errors, and the unsupported-call guard.

Everything the stand-in knows comes from the context file the orchzip runner writes for a run
(``ORCHZIP_CONTEXT``: args, connections, local pipelines, workspaces). What a task creates
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


class NotDeployed(ConfigError):
    """``infer`` on a pipeline that is not deployed (as Wallaroo refuses it too)."""


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
    """The run's context plus what this process created; shared by every Client."""

    def __init__(self, context):
        self.context = context
        self.created_at = utcnow()
        self.workspaces = {}  # name -> Workspace record dict
        self.pipelines = {}  # name -> pipeline record dict
        self.models = {}  # name -> list of Model (versions, newest last)
        self.current_workspace = None
        self._model_runners = {}
        self._next_ids = {"workspace": 1, "pipeline": 1, "model": 1}
        self.add_workspace(DEFAULT_WORKSPACE)
        for name in context.get("workspaces", []):
            self.add_workspace(name)

    def next_id(self, kind):
        value = self._next_ids[kind]
        self._next_ids[kind] += 1
        return value

    def add_workspace(self, name):
        if name not in self.workspaces:
            self.workspaces[name] = {"id": self.next_id("workspace"), "name": name, "created_at": utcnow()}
        return self.workspaces[name]

    def model_runner(self, path, tensor_column):
        """The shim's ONNX model for ``path``, loaded once per process."""
        key = (path, tensor_column)
        if key not in self._model_runners:
            from orchzip_shim.models import OnnxModel
            name = os.path.splitext(os.path.basename(path))[0]
            self._model_runners[key] = OnnxModel(path, name=name, tensor_column=tensor_column)
        return self._model_runners[key]


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
