"""Configuration objects the SDK takes for deployments and model uploads, recorded as given.

A local pipeline has no engine, accelerator or batching to configure, so these objects only
keep their keyword arguments (``settings``), which is enough for an orchestration to build
them at import time and pass them on.
"""

__all__ = ["Settings"]


class Settings:
    """Keeps the keyword arguments it was made with, readable as attributes."""

    def __init__(self, **settings):
        self.settings = dict(settings)

    def __getattr__(self, name):
        settings = self.__dict__.get("settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(name)

    def __eq__(self, other):
        return type(other) is type(self) and other.settings == self.settings

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({inner})"
