"""Whether a requirements.txt installs beside the wallaroo SDK of a Wallaroo release.

Wallaroo installs an orchestration's requirements into a task image that already holds the
SDK and everything it pins; pip only warns when a requirement replaces one of them, and the
SDK then breaks inside the task. The check resolves without installing anything:

1. each requirement against the SDK's own pin of the same package (one line per conflict,
   e.g. ``pandas==1.5.3 conflicts with wallaroo 2026.1.3's pandas==2.2.0``);
2. then uv resolves ``wallaroo==<version>`` with the requirements, as the image would hold
   them, which finds conflicts through other packages (uv names the first one it meets);
3. and, for a report, the versions the local task environment would get.
"""

__all__ = ["EnvironmentCheck", "check_environment"]


class EnvironmentCheck:
    """``conflicts``: one line each; ``versions``: ``{package: version}`` the task would get."""

    def __init__(self, wallaroo_version, conflicts, versions, pins):
        self.wallaroo_version, self.conflicts = wallaroo_version, conflicts
        self.versions, self.pins = versions, pins

    @property
    def ok(self):
        return not self.conflicts

    def as_dict(self):
        return {"wallaroo_version": self.wallaroo_version, "ok": self.ok, "conflicts": self.conflicts,
                "versions": self.versions, "pins": self.pins}


def check_environment(requirement_lines, wallaroo_version=None, cache_dir=None, python=None):
    """Check ``requirement_lines`` against wallaroo ``wallaroo_version``; returns :class:`EnvironmentCheck`.

    :param requirement_lines: the zip's requirements, one requirement each (no options).
    :raises ConfigError: the index cannot be reached and the SDK's metadata is not cached.
    """
    from orchzip.runtime import environments, wallaroo_pins
    from orchzip.runtime.wallaroo_versions import resolve_version

    version = resolve_version(wallaroo_version)
    cache_dir = cache_dir or environments.default_cache_dir()
    python, python_version, _why = environments._interpreter(python)
    pins = wallaroo_pins.sdk_pins(cache_dir, version, python, environments.uv_binary())
    lines = [line for line in requirement_lines if line.strip() and not line.strip().startswith("-")]
    conflicts = wallaroo_pins.direct_conflicts(lines, pins, python_version)
    versions = {}
    if not conflicts:
        try:
            environments.resolve(lines, version, cache_dir, python, with_sdk=True)
            versions = environments.resolve(lines, version, cache_dir, python)
        except environments.RequirementsNotInstallable as err:
            conflicts = [_one_line(err, version)]
    return EnvironmentCheck(version, conflicts, versions, pins.lines)


def _one_line(err, version):
    """uv's reason (from its ``cause:`` line on, hints left out) as one line."""
    lines = [line.strip() for line in str(err).splitlines()[1:] if line.startswith("  ")]
    start = next((i for i, line in enumerate(lines) if line.startswith("cause:")), None)
    if start is None:
        kept = [line for line in lines if not line.startswith("error:")] or lines
    else:
        kept = [lines[start][len("cause:"):].strip()] + lines[start + 1:]
    reason = " ".join(line for line in kept if not line.startswith(("hint:", "help:")))
    return f"cannot be installed beside wallaroo {version}: {reason}"
