"""orchzip's local stand-in of the wallaroo SDK, for orchestrations run by ``orchzip run``.

It is put on the ``PYTHONPATH`` of the task processes orchzip starts and nowhere else, so an
orchestration's ``import wallaroo`` gets this package locally and the real SDK on Wallaroo.
It plays the part of the SDK (2026.1.3) that runs inside a task: ``Client()``, ``in_task()``,
``task_args()``, ``get_connection(name)``, workspaces (``get_workspace``, ``create_workspace``,
``set_current_workspace``, ``Workspace.pipelines()``), ``pipelines_by_name`` /
``get_pipeline`` / ``build_pipeline``, models, ``pipeline.deploy() / infer() /
parallel_infer() / undeploy()``, the SDK's exceptions in ``wallaroo.object`` and the
configuration modules orchestrations import at top level, all backed by orchzip's local
state; lookups fail with the SDK's own exception kinds and texts. Anything else fails with
one line that names the call and says it is not available locally.
"""

import importlib.abc
import os
import sys

from ._local import ModuleNotAvailableLocally, NotAvailableLocally
from .client import Client
from .deployment_config import DeploymentConfigBuilder

__version__ = "2026.1.3+orchzip.local"
__all__ = ["Client", "DeploymentConfigBuilder", "__version__"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def __getattr__(name):
    if name.startswith("_"):
        raise AttributeError(name)
    raise NotAvailableLocally.from_args(f"wallaroo.{name}", __all__[:-1])


class _MissingSubmodules(importlib.abc.MetaPathFinder):
    """Turns ``import wallaroo.<what the stand-in lacks>`` into one clear error.

    It sits last on ``sys.meta_path``, so it only sees names no other finder found.
    """

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("wallaroo."):
            return None
        present = sorted(
            f"wallaroo.{f[:-3]}" for f in os.listdir(_HERE) if f.endswith(".py") and not f.startswith("_")
        )
        raise ModuleNotAvailableLocally(
            f"module {fullname} is not available in an orchzip local run "
            f"(available: {', '.join(present)})",
            name=fullname,
        )


if not any(isinstance(f, _MissingSubmodules) for f in sys.meta_path):
    sys.meta_path.append(_MissingSubmodules())
