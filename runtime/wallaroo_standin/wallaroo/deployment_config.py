"""Deployment configurations: accepted and recorded, since a local pipeline has no resources.

Every builder call of the SDK (``replica_count``, ``cpus``, ``memory``, ``gpus``,
``sidekick_*``, ...) is accepted and chained; ``build()`` returns the recorded settings.
"""

__all__ = ["DeploymentConfig", "DeploymentConfigBuilder"]


class DeploymentConfig(dict):
    """The settings a deployment asked for; a local deployment records them only."""


class DeploymentConfigBuilder:
    def __init__(self, workspace_id=None):
        self._settings = {}

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)

        def setting(*args, **kwargs):
            self._settings[name] = args[0] if len(args) == 1 and not kwargs else {"args": list(args), **kwargs}
            return self

        return setting

    def build(self):
        return DeploymentConfig(self._settings)
