"""One loader per framework: ``<framework>.py`` with ``load(path, spec) -> callable``.

The callable takes ``dict[str, np.ndarray]`` (one array per input field, N rows each) and
returns ``dict[str, np.ndarray]`` (one array per output field, N rows each). ``spec`` is the
model spec (see the issue's contract: name, version, framework, path, schemas ...).
"""

import importlib

__all__ = ["load", "ModelLoadError"]


class ModelLoadError(Exception):
    """The model does not have the interface its framework requires; ``str()`` is one line."""


def load(framework, path, spec):
    name = str(framework or "").lower()
    if not name.isidentifier():
        raise ModelLoadError(f"unknown framework {framework!r}")
    try:
        module = importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name and err.name.endswith(f"loaders.{name}"):
            raise ModelLoadError(f"orchzip has no loader for framework {framework!r}") from None
        raise
    return module.load(path, spec)
