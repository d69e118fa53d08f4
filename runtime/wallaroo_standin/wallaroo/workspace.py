"""Workspaces: the ones in orchzip's local state, plus those a task creates while it runs."""

from ._local import LocalSurface, state

__all__ = ["Workspace"]


class Workspace(LocalSurface):
    _surface_name = "wallaroo.Workspace"

    def __init__(self, record):
        self._record = record

    def id(self):
        return self._record["id"]

    def name(self):
        return self._record["name"]

    def created_at(self):
        return self._record["created_at"]

    def archived(self):
        return False

    def pipelines(self):
        from .pipeline import Pipeline
        return [Pipeline(r) for r in state().pipelines.values()]

    def list_connections(self):
        from .client import Client
        return Client().list_connections()

    def add_connection(self, name):
        return None  # workspaces do not scope connections in a local run

    def remove_connection(self, name):
        return None

    def __eq__(self, other):
        return isinstance(other, Workspace) and other.id() == self.id()

    def __hash__(self):
        return hash(self.id())

    def __repr__(self):
        return f"Workspace(name={self.name()!r}, id={self.id()})"

    __str__ = __repr__
