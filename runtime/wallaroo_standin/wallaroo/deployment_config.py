"""Deployment configurations: accepted and recorded, since a local pipeline has no resources.

The SDK's builder calls (``replica_count``, ``cpus``, ``memory``, ``gpus``, ``sidekick_*``,
...) are accepted and chained; ``build()`` returns the recorded settings. A name the SDK's
builder does not have fails as an unsupported call.
"""

from ._local import NotAvailableLocally

__all__ = ["DeploymentConfig", "DeploymentConfigBuilder"]

# The public methods of the SDK's DeploymentConfigBuilder (2026.1.3), besides build().
BUILDER_METHODS = frozenset("""
    image replica_count replica_autoscale_min_max autoscale_cpu_utilization disable_autoscale cpus
    deployment_label gpus memory lb_cpus lb_memory arch accel python_load_timeout_secs sidekick_gpus
    sidekick_cpus sidekick_memory sidekick_env sidekick_arch sidekick_accel scale_up_queue_depth
    scale_down_queue_depth autoscaling_window
""".split())


class DeploymentConfig(dict):
    """The settings a deployment asked for; a local deployment records them only."""


class DeploymentConfigBuilder:
    def __init__(self, workspace_id=None):
        self._settings = {}

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in BUILDER_METHODS:
            raise NotAvailableLocally.from_args(f"wallaroo.DeploymentConfigBuilder.{name}",
                                                sorted(BUILDER_METHODS | {"build"}))

        def setting(*args, **kwargs):
            self._settings[name] = args[0] if len(args) == 1 and not kwargs else {"args": list(args), **kwargs}
            return self

        return setting

    def build(self):
        return DeploymentConfig(self._settings)
