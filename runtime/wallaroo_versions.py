"""The Wallaroo releases orchzip can target, and which one a run targets.

Behaviour that differs between Wallaroo releases (the shape of inference results, the SDK's
pins in the task image) follows one setting: the target Wallaroo version. It reaches a task
through its context (``wallaroo_version``), so the shim and the wallaroo stand-in shape
results as that release does.

How the version is chosen, first match wins: an explicit value (a ``--wallaroo-version``
flag), ``$ORCHZIP_WALLAROO_VERSION``, ``wallaroo_version:`` in the project's ``orchzip.yaml``
(the nearest one at or above the current folder), then :data:`DEFAULT_VERSION`.
"""

import os

from orchzip.errors import ConfigError

__all__ = ["DEFAULT_VERSION", "KNOWN_VERSIONS", "VERSION_ENV", "resolve_version", "anomaly_column"]

VERSION_ENV = "ORCHZIP_WALLAROO_VERSION"

# Releases whose behaviour orchzip has checked, oldest first. ``anomaly``: the name of the
# per-row count of failed validation checks in inference results.
KNOWN_VERSIONS = {
    "2023.2.1": {"anomaly": "check_failures"},
    "2024.1.0": {"anomaly": "anomaly.count"},
    "2026.1.3": {"anomaly": "anomaly.count"},
}
DEFAULT_VERSION = "2026.1.3"


def resolve_version(explicit=None, environ=None):
    """The target Wallaroo version: ``explicit``, else the environment, else the default.

    :raises ConfigError: for a version orchzip does not know.
    """
    environ = os.environ if environ is None else environ
    value, where = explicit, None
    if not value and environ.get(VERSION_ENV):
        value, where = environ[VERSION_ENV], f"${VERSION_ENV}"
    if not value:
        value, where = project_version()
    value = str(value or DEFAULT_VERSION).strip()
    if value not in KNOWN_VERSIONS:
        known = ", ".join(KNOWN_VERSIONS)
        raise ConfigError(
            f"unknown Wallaroo version {value!r}{f' in {where}' if where else ''}; orchzip knows: {known} "
            f"(set it with --wallaroo-version, ${VERSION_ENV} or wallaroo_version: in orchzip.yaml)"
        )
    return value


def project_version(start=None):
    """``(version, path)`` from ``wallaroo_version:`` of the project's orchzip.yaml, else ``(None, None)``.

    Only this key is read here; ``orchzip apply`` reports whatever else is wrong with the file.
    """
    from orchzip.runtime.project import PROJECT_FILE, find_root
    root = find_root(start or os.getcwd())
    path = os.path.join(root, PROJECT_FILE) if root else None
    if not path or not os.path.isfile(path):
        return None, None
    import yaml
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None, None
    value = data.get("wallaroo_version") if isinstance(data, dict) else None
    return (None, None) if value is None else (str(value), path)


def anomaly_column(version):
    """``check_failures`` for 2023 releases, ``anomaly.count`` for later ones."""
    return KNOWN_VERSIONS[version]["anomaly"]
