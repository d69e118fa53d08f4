"""A client of a Wallaroo instance's MLOps REST API (or of `orchzip serve`, which speaks it).

Building a zip and shipping it are separate jobs, as pypa/build and twine are separate tools:
``builder`` only builds and inspects; this package only talks to an instance. ``orchzip upload``,
``orchzip remote ...`` and ``orchzip apply --remote`` all go through it.

    settings = Settings(url="http://127.0.0.1:8080", token=token)
    client = settings.create_client()
    orch = client.upload_orchestration("dist/houseprice.zip", workspace_id=1)

Modules: ``_errors`` (the errors and the scrubbing of secrets, shared by both others),
``_settings`` (where the URL and credentials come from), ``client`` (one method per endpoint).
"""

from ._errors import (
    AuthenticationFailed,
    InstanceUnavailable,
    InvalidCredentials,
    MissingCredentials,
    MLOpsError,
    NameTaken,
    NotFoundOnInstance,
    OperationFailed,
    RequestRefused,
    sanitize_url,
    scrub,
)
from ._settings import Settings

# The client imports requests (0.15 s): only the commands that talk to an instance pay for it,
# not every CLI start (the parser registers Settings' flags for several commands).
_CLIENT_NAMES = ("Client", "task_outcome", "ORCHESTRATION_FINAL", "TASK_FINAL", "TASK_KINDS")


def __getattr__(name):
    if name in _CLIENT_NAMES:
        from . import client
        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Client",
    "Settings",
    "task_outcome",
    "ORCHESTRATION_FINAL",
    "TASK_FINAL",
    "TASK_KINDS",
    "MLOpsError",
    "AuthenticationFailed",
    "InstanceUnavailable",
    "InvalidCredentials",
    "MissingCredentials",
    "NameTaken",
    "NotFoundOnInstance",
    "OperationFailed",
    "RequestRefused",
    "sanitize_url",
    "scrub",
]
