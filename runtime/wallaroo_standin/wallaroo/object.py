"""Errors of the wallaroo SDK that orchestrations catch by name.

``EntityNotFoundError`` is what ``Client.pipelines_by_name`` raises for a name with no
pipeline; orchestrations written for Wallaroo catch it to build the pipeline instead. It is
an orchzip error too, so when nothing catches it the task ends with one readable line.
"""

from orchzip_shim.errors import ConfigError

__all__ = ["EntityNotFoundError", "DeploymentError", "CommunicationError", "InferenceError"]


class EntityNotFoundError(ConfigError):
    """No object of this kind with these identifiers exists (locally: in orchzip's state)."""

    def __init__(self, entity_type, params):
        super().__init__(f"{entity_type} not found: {params}")
        self.entity_type = entity_type
        self.params = params


class DeploymentError(ConfigError):
    """A pipeline cannot be deployed (locally: it has no model step)."""


class CommunicationError(Exception):
    """Never raised locally: there is no server to lose; defined for ``except`` clauses."""


class InferenceError(ConfigError):
    """An inference was refused (locally: the model rejected the rows)."""
