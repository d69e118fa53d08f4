"""``wallaroo.Client`` for a local run: the SDK surface orchestrations use inside a task.

Lookups fail as the SDK's do (2026.1.3), so an orchestration's ``try``/``except`` behaves as
on Wallaroo: ``get_workspace``, ``get_connection``, ``get_pipeline`` and ``get_model`` raise a
plain ``Exception`` with the SDK's text, ``pipelines_by_name`` an ``EntityNotFoundError``.
Each also carries what to do locally (see ``_local.sdk_error``).
"""

import os
import re

from orchzip_shim.errors import ConfigError, UnknownConnection, UnknownPipeline

from ._local import DEFAULT_WORKSPACE, LocalSurface, sdk_error, state
from .connection import Connection, ConnectionList, bind_emulator
from .model import Model, check_framework
from .object import EntityNotFoundError, InvalidNameError
from .pipeline import Pipeline, Pipelines
from .workspace import Workspace

__all__ = ["Client"]

# The SDK's rule for workspace and pipeline names it creates (create_workspace, build_pipeline).
_DNS_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z0-9]*$")
_DNS_RULE = "must be DNS-compatible (ASCII alpha-numeric plus dash (-))"


def require_dns_name(name):
    if not isinstance(name, str) or not _DNS_NAME.match(name):
        raise InvalidNameError(name, _DNS_RULE)


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
        """The JSON object the task was started with (``orchzip run --arg``)."""
        return dict(self._state.context.get("args") or {})

    # -- connections --------------------------------------------------------------------
    def get_connection(self, name=str):
        connections = self._state.context.get("connections") or {}
        if not isinstance(name, str) or name not in connections:
            raise sdk_error("Failed to get connection", str(UnknownConnection.from_args(name, connections)))
        connection = Connection(name, connections[name])
        bind_emulator(connection)
        return connection

    def list_connections(self):
        connections = self._state.context.get("connections") or {}
        return ConnectionList(Connection(n, e) for n, e in sorted(connections.items()))

    def create_connection(self, name=str, connection_type=str, details=None):
        raise ConfigError(
            f"wallaroo.Client.create_connection is not available inside an orchzip local run; create "
            f"the connection before the run with: orchzip connections create {name} --type "
            f"{connection_type} --details JSON"
        )

    # -- workspaces ---------------------------------------------------------------------
    def list_workspaces(self):
        return [Workspace(r) for r in self._state.workspaces.values()]

    def create_workspace(self, workspace_name):
        require_dns_name(workspace_name)
        if workspace_name in self._state.workspaces:
            raise sdk_error("Failed to create workspace.", f"workspace {workspace_name!r} already exists; "
                            f"get it with wl.get_workspace({workspace_name!r})")
        return Workspace(self._state.add_workspace(workspace_name))

    def get_workspace(self, name, create_if_not_exist=False):
        """The workspace ``name``; created when ``create_if_not_exist`` is True, else an ``Exception``."""
        if name in self._state.workspaces:
            return Workspace(self._state.workspaces[name])
        if create_if_not_exist is True:
            return Workspace(self._state.add_workspace(name))
        known = ", ".join(n for n in self._state.workspaces if n != DEFAULT_WORKSPACE) or "none"
        raise sdk_error(
            f"Error: Workspace with name {name} does not exist. If you would like to create one, send in "
            f"the request with `create_if_not_exist` flag set to True.",
            f"workspace {name!r} does not exist locally (known: {known}); "
            f"create it with: orchzip workspaces create {name}",
        )

    def set_current_workspace(self, workspace):
        assert workspace is not None
        if not isinstance(workspace, Workspace):
            raise TypeError("Workspace type was expected")
        self._state.current_workspace = workspace._record
        return workspace

    def get_current_workspace(self):
        return Workspace(self._state.current())

    # -- pipelines ----------------------------------------------------------------------
    def pipelines_by_name(self, pipeline_name, workspace_id=None, workspace_name=None):
        """``[pipeline]`` from every workspace (or the one named); ``EntityNotFoundError`` if none."""
        _check_workspace_filters(workspace_id, workspace_name)
        found = [r for r in self._state.pipelines.values() if r["name"] == pipeline_name
                 and workspace_id in (None, r["workspace"]["id"])
                 and workspace_name in (None, r["workspace"]["name"])]
        if not found:
            err = EntityNotFoundError("Pipeline", {"pipeline_name": pipeline_name})
            err.orchzip_hint = self._missing_pipeline_hint(pipeline_name)
            raise err
        return Pipelines(Pipeline(r) for r in found)

    def get_pipeline(self, name, version=None):
        """Pipeline ``name`` of the current workspace; a plain ``Exception`` as the SDK's otherwise."""
        record = self._state.pipelines.get(name)
        if record is None or record["workspace"]["id"] != self._state.current()["id"]:
            raise sdk_error(f"Pipeline {name} not found in this workspace.", self._missing_pipeline_hint(name))
        if version is not None:
            raise sdk_error(f"Pipeline version {version} not found in this workspace.",
                            f"a local pipeline has one version: call wl.get_pipeline({name!r}) without version")
        return Pipeline(record)

    def list_pipelines(self, workspace_id=None, workspace_name=None):
        _check_workspace_filters(workspace_id, workspace_name)
        if workspace_name is not None and workspace_id is None:
            if workspace_name not in self._state.workspaces:
                raise sdk_error(f"Workspace by name {workspace_name} is not found",
                                f"create it with: orchzip workspaces create {workspace_name}")
        return Pipelines(Pipeline(r) for r in self._state.pipelines.values()
                         if workspace_id in (None, r["workspace"]["id"])
                         and workspace_name in (None, r["workspace"]["name"]))

    def build_pipeline(self, pipeline_name):
        """A pipeline with no steps (a new definition, as on Wallaroo), in the current workspace."""
        require_dns_name(pipeline_name)
        record = self._state.pipelines.get(pipeline_name)
        if record is None:
            record = self._state.new_pipeline(pipeline_name, [], deployed=False, workspace=self._state.current())
        record["steps"] = []
        record["deployed"] = False
        record["workspace"] = self._state.current()
        return Pipeline(record)

    def _missing_pipeline_hint(self, name):
        current = self._state.current()
        record = self._state.pipelines.get(name)
        if record is not None and record["workspace"]["id"] != current["id"]:
            where = record["workspace"]["name"]
            move = (f"orchzip workspaces remove-pipeline {where} {name}" if current is self._state.default_workspace
                    else f"orchzip workspaces add-pipeline {current['name']} {name}")
            return (f"pipeline {name!r} is in workspace {where!r}, not in the current one ({current['name']!r}); "
                    f"call wl.set_current_workspace(wl.get_workspace({where!r})) first, or move it: {move}")
        text = str(UnknownPipeline.from_args(name, list(self._state.pipelines)))
        text = text.replace("unknown pipeline", "no local pipeline", 1)
        if current["name"] != DEFAULT_WORKSPACE:
            text += f" --workspace {current['name']}"
        return text

    # -- models -------------------------------------------------------------------------
    def upload_model(self, name, path, framework=None, input_schema=None, output_schema=None, **_ignored):
        """A local model; ``path`` is relative to the task's working directory (the zip's root).

        As on Wallaroo, each upload of ``name`` is its next version, and ``input_schema`` /
        ``output_schema`` are ``pyarrow.Schema`` objects.
        """
        require_dns_name(name)
        path = os.path.abspath(os.fspath(path))
        spec = check_framework(name, framework, path, input_schema, output_schema)
        versions = self._state.models.setdefault(name, [])
        model = Model(name, path, self._state.next_id("model"), version=str(len(versions) + 1), spec=spec)
        model.workspace_id = self._state.current()["id"]
        versions.append(model)
        return model

    def get_model(self, name, version=None):
        """The newest version of model ``name`` in the current workspace, or version ``version``."""
        models = Workspace(self._state.current()).models()
        named = [m for m in models if m.name() == name]
        if not named:
            raise sdk_error(
                f"Error: A model with the name {name} does not exist.",
                f"no model {name!r} in workspace {self._state.current()['name']!r} "
                f"(models: {', '.join(sorted({m.name() for m in models})) or 'none'}); upload it in the task "
                f"with wl.upload_model, or register it before the run: orchzip models upload {name} FILE",
            )
        if version is None:
            return named[-1]
        for model in named:
            if model.version() == str(version):
                return model
        raise sdk_error(f"Error: A model with the version {version} not found in this workspace.",
                        f"model {name!r} has versions {', '.join(m.version() for m in named)} locally")

    def __repr__(self):
        return "Client(orchzip local run)"


def _check_workspace_filters(workspace_id, workspace_name):
    # The SDK's own argument checks.
    if workspace_id is not None and not isinstance(workspace_id, int):
        raise TypeError("Workspace ID must be an integer.")
    if workspace_name is not None and not isinstance(workspace_name, str):
        raise TypeError("Workspace name must be a string.")
