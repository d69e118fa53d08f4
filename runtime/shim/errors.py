"""Errors a user can cause, each carrying a one-line message that says what to fix.

This module is the root of orchzip's error hierarchy. It lives in the shim because the shim
ships inside every zip and may import nothing else from orchzip; the rest of orchzip
imports these classes from here.
"""

__all__ = [
    "OrchzipError",
    "TransientError",
    "TerminalError",
    "ConfigError",
    "UnknownConnection",
    "UnknownPipeline",
    "MissingDependency",
    "BadInput",
    "ModelError",
]


class OrchzipError(Exception):
    """Base of every error orchzip raises on purpose. ``str(err)`` is one line for the user."""


class TransientError:
    """Mixin: retrying the same operation later may succeed (quota, timeouts, 5xx)."""


class TerminalError:
    """Mixin: retrying will fail again until the user changes something."""


class ConfigError(OrchzipError, TerminalError):
    """A connection, pipeline, argument or file is configured wrongly."""


class UnknownConnection(ConfigError):
    @classmethod
    def from_args(cls, name, known):
        known_text = ", ".join(sorted(known)) or "none"
        return cls(
            f"unknown connection {name!r} (known: {known_text}); "
            f"create it with: orchzip connections create {name} --type TYPE --details JSON"
        )


class UnknownPipeline(ConfigError):
    @classmethod
    def from_args(cls, name, known):
        known_text = ", ".join(sorted(known)) or "none"
        return cls(
            f"unknown pipeline {name!r} (known: {known_text}); "
            f"create it with: orchzip pipelines create {name} --model MODEL.onnx"
        )


class MissingDependency(ConfigError):
    @classmethod
    def from_args(cls, what, packages):
        names = " ".join(packages)
        return cls(f"{what} needs {names}: add it to the orchestration's requirements.txt (or: pip install {names})")


class BadInput(OrchzipError, TerminalError):
    """The rows read do not fit what the model or the sink expects."""


class ModelError(OrchzipError, TerminalError):
    """A model file is missing, unreadable, or does not have the expected interface."""
