"""Workspaces: orchzip's local ones (``orchzip workspaces``), plus those a task creates while it runs.

A workspace shows the pipelines and connections orchzip's state puts in it, and what the task
adds; changes made by the task stay in the task's process.
"""

from ._local import LocalSurface, sdk_error, state

__all__ = ["Workspace", "Workspaces"]


class Workspace(LocalSurface):
    _surface_name = "wallaroo.Workspace"

    def __init__(self, record):
        self._record = record

    def id(self):
        return self._record["id"]

    def name(self):
        return self._record["name"]

    def created_at(self):
        created = self._record["created_at"]
        return created if isinstance(created, str) else created.isoformat()

    def created_by(self):
        return "local"

    def archived(self):
        return False

    def users(self):
        return []

    def pipelines(self):
        """The pipelines in this workspace (no ``list_pipelines()`` needed first)."""
        from .pipeline import Pipeline
        return [Pipeline(r) for r in state().pipelines_in(self._record)]

    def models(self):
        """Models uploaded into this workspace, and the models of its pipelines."""
        local = state()
        found = [m for versions in local.models.values() for m in versions
                 if getattr(m, "workspace_id", None) == self.id()]
        for record in local.pipelines_in(self._record):
            found.extend(m for m in record["steps"] if m not in found)
        return found

    def list_connections(self):
        from .client import Client
        return type(Client().list_connections())(
            c for c in Client().list_connections() if self.name() in c.workspace_names())

    def add_connection(self, name):
        """Put connection ``name`` in this workspace (for the rest of the task's process)."""
        _memberships(name).add(self.name())

    def remove_connection(self, name):
        _memberships(name).discard(self.name())

    def to_json(self):
        return {"name": self.name(), "id": self.id(), "archived": False, "created_by": "local",
                "created_at": self.created_at(), "models": [m.name() for m in self.models()],
                "pipelines": [p.name() for p in self.pipelines()]}

    def __eq__(self, other):
        return isinstance(other, Workspace) and other.id() == self.id()

    def __hash__(self):
        return hash(self.id())

    def __repr__(self):
        return str(self.to_json())

    __str__ = __repr__


class Workspaces(list):
    """A list of Workspace (as the SDK names it)."""


def _memberships(connection_name):
    local = state()
    if connection_name not in local.connection_workspaces:
        from orchzip_shim.errors import UnknownConnection
        raise sdk_error("Failed to get connection",
                        str(UnknownConnection.from_args(connection_name, local.connection_workspaces)))
    return local.connection_workspaces[connection_name]
