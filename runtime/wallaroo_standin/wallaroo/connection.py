"""Named data connections, read from orchzip's local state (``orchzip connections create``)."""

import os

from ._local import LocalSurface, sdk_error, state

__all__ = ["Connection", "ConnectionList"]

# A BIGQUERY connection whose details name an emulator endpoint under this key sends the
# official client (which reads BIGQUERY_EMULATOR_HOST) there; see the shim's BigQuery connector.
EMULATOR_DETAILS_KEYS = ("api_endpoint",)  # as the shim's bigquery_connector names it
BIGQUERY_EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"


class Connection(LocalSurface):
    """One connection: ``name()``, ``connection_type()``, ``details()`` and the rest."""

    _surface_name = "wallaroo.Connection"

    def __init__(self, name, entry):
        self._name = name
        self._entry = entry

    def id(self):
        return self._entry.get("id")

    def name(self):
        return self._name

    def connection_type(self):
        return str(self._entry.get("type", "")).upper()

    def details(self):
        """The details dict, ``${VAR}`` references filled in from the environment."""
        from orchzip_shim.context import expand_env
        return expand_env(dict(self._entry.get("details") or {}))

    def created_at(self):
        return self._entry.get("created_at")

    def workspace_names(self):
        """The workspaces it is in: as orchzip's state has it, with the task's own changes."""
        names = state().connection_workspaces.get(self._name)
        return sorted(names) if names is not None else list(self._entry.get("workspace_names") or [])

    def add_connection_to_workspace(self, workspace_id):
        state().connection_workspaces.setdefault(self._name, set()).add(_workspace_name(workspace_id))

    def remove_connection_from_workspace(self, workspace_id):
        state().connection_workspaces.setdefault(self._name, set()).discard(_workspace_name(workspace_id))

    def __repr__(self):
        # The details may hold a service-account key: never show them.
        return f"Connection(name={self._name!r}, type={self.connection_type()!r}, id={self.id()!r})"


def _workspace_name(workspace_id):
    for record in state().workspaces.values():
        if record["id"] == workspace_id:
            return record["name"]
    raise sdk_error(f"Failed to add connection to workspace {workspace_id}",
                    f"no local workspace has id {workspace_id}; see them with: orchzip workspaces list")


class ConnectionList(list):
    """A list of Connection (what ``list_connections()`` returns)."""


def bind_emulator(connection):
    """Point google-cloud-bigquery at the emulator a BIGQUERY connection names, if any.

    The task's own ``bigquery.Client(credentials=..., project=...)`` is created after it gets
    the connection, and the client reads ``BIGQUERY_EMULATOR_HOST`` when it is created.
    """
    if connection.connection_type() != "BIGQUERY":
        return
    details = connection._entry.get("details") or {}
    for key in EMULATOR_DETAILS_KEYS:
        if details.get(key):
            from orchzip_shim.context import expand_env
            os.environ[BIGQUERY_EMULATOR_ENV] = expand_env(str(details[key]))
            return
