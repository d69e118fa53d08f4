"""``wallaroo.Client`` for a local run: the SDK surface orchestrations use inside a task."""

import os

from orchzip_shim.errors import ConfigError, UnknownConnection

from ._local import LocalSurface, state, utcnow
from .connection import Connection, ConnectionList, bind_emulator
from .model import Model, check_framework
from .object import EntityNotFoundError
from .pipeline import Pipeline, Pipelines
from .workspace import Workspace

__all__ = ["Client"]


class Client(LocalSurface):
    """A client of orchzip's local state; takes (and ignores) the SDK's connection arguments."""

    _surface_name = "wallaroo.Client"

    def __init__(self, api_endpoint=None, request_timeout=None, auth_type=None, gql_client=None,
                 interactive=None, time_format="%Y-%d-%b %H:%M:%S", config=None, **_ignored):
        self._state = state()
        self.api_endpoint = api_endpoint or "local"

    # -- the task -----------------------------------------------------------------------
    def in_task(self):
        return "WALLAROO_TASK_ID" in os.environ

    def task_args(self):
        """The JSON object the task was started with (``orchzip run --args``)."""
        return dict(self._state.context.get("args") or {})

    # -- connections --------------------------------------------------------------------
    def get_connection(self, name):
        connections = self._state.context.get("connections") or {}
        if name not in connections:
            raise UnknownConnection.from_args(name, connections)
        connection = Connection(name, connections[name])
        bind_emulator(connection)
        return connection

    def list_connections(self):
        connections = self._state.context.get("connections") or {}
        return ConnectionList(Connection(n, e) for n, e in sorted(connections.items()))

    # -- workspaces ---------------------------------------------------------------------
    def list_workspaces(self):
        return [Workspace(r) for r in self._state.workspaces.values()]

    def create_workspace(self, workspace_name):
        if workspace_name in self._state.workspaces:
            raise ConfigError(f"workspace {workspace_name!r} already exists")
        return Workspace(self._state.add_workspace(workspace_name))

    def get_workspace(self, name, create_if_not_exist=False):
        if name in self._state.workspaces:
            return Workspace(self._state.workspaces[name])
        return Workspace(self._state.add_workspace(name)) if create_if_not_exist else None

    def set_current_workspace(self, workspace):
        if not isinstance(workspace, Workspace):
            raise TypeError("Workspace type was expected")
        self._state.current_workspace = workspace._record
        return workspace

    def get_current_workspace(self):
        record = self._state.current_workspace or next(iter(self._state.workspaces.values()))
        return Workspace(record)

    # -- pipelines ----------------------------------------------------------------------
    def pipelines_by_name(self, pipeline_name, workspace_id=None, workspace_name=None):
        """``[pipeline]``; raises ``wallaroo.object.EntityNotFoundError`` for an unknown name."""
        record = _pipeline_record(self._state, pipeline_name)
        if record is None:
            raise EntityNotFoundError("Pipeline", {"pipeline_name": pipeline_name})
        return Pipelines([Pipeline(record)])

    def get_pipeline(self, name, version=None):
        record = _pipeline_record(self._state, name)
        if record is None:
            raise EntityNotFoundError("Pipeline", {"pipeline_name": name})
        return Pipeline(record)

    def list_pipelines(self, workspace_id=None, workspace_name=None):
        for name in (self._state.context.get("pipelines") or {}):
            _pipeline_record(self._state, name)
        return Pipelines(Pipeline(r) for r in self._state.pipelines.values())

    def build_pipeline(self, pipeline_name):
        """A pipeline with no steps (a new definition, as on Wallaroo), to add a model step to."""
        record = _pipeline_record(self._state, pipeline_name) or _new_record(
            self._state, pipeline_name, [], deployed=False
        )
        record["steps"] = []
        record["deployed"] = False
        record["workspace"] = self.get_current_workspace()._record
        return Pipeline(record)

    # -- models -------------------------------------------------------------------------
    def upload_model(self, name, path, framework=None, input_schema=None, output_schema=None, **_ignored):
        """A local ONNX model; ``path`` is relative to the task's working directory (the zip's root)."""
        path = os.path.abspath(os.fspath(path))
        check_framework(framework, path)
        if not os.path.isfile(path):
            raise ConfigError(f"upload_model({name!r}): the model file {path} does not exist")
        versions = self._state.models.setdefault(name, [])
        model = Model(name, path, self._state.next_id("model"), version=str(len(versions) + 1))
        versions.append(model)
        return model

    def get_model(self, name, version=None):
        for model in reversed(self._state.models.get(name, [])):
            if version is None or model.version() == str(version):
                return model
        for pipeline_name in (self._state.context.get("pipelines") or {}):
            record = _pipeline_record(self._state, pipeline_name)
            for step in record["steps"]:
                if step.name() == name:
                    return step
        raise EntityNotFoundError("Model", {"name": name, "version": version})

    def __repr__(self):
        return "Client(orchzip local run)"


def _pipeline_record(state, name):
    """The record of pipeline ``name``: made (deployed) from the context on first use."""
    if name in state.pipelines:
        return state.pipelines[name]
    entry = (state.context.get("pipelines") or {}).get(name)
    if entry is None:
        return None
    path = entry["model"]
    model = Model(os.path.splitext(os.path.basename(path))[0], path, state.next_id("model"),
                  tensor_column=entry.get("tensor_column"))
    return _new_record(state, name, [model], deployed=True)


def _new_record(state, name, steps, deployed):
    workspace = state.current_workspace or next(iter(state.workspaces.values()))
    record = {"id": state.next_id("pipeline"), "name": name, "steps": steps, "deployed": deployed,
              "workspace": workspace, "created_at": utcnow()}
    state.pipelines[name] = record
    return record
