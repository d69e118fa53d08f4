"""A model's own Python environment, built with uv and cached like the task environments.

Wallaroo runs Python and BYOP models in its Python runtime (Python with numpy, pyarrow and
pandas) plus the packages the model's requirements.txt lists. Locally each non-ONNX model gets
the same: a virtual environment with :data:`MODEL_PACKAGES` (and what its framework needs, see
:data:`FRAMEWORK_PACKAGES`) and its requirements, resolved under the wallaroo SDK's pins like
a task environment, so its numpy/pyarrow/pandas match the task's. It is built and cached by
``environments.ensure_environment`` (keyed by these packages, the requirements, the Python
version and the pins), so two models with the same requirements share one, and the second
upload of a model installs nothing.
"""

import io
import os
import zipfile

from orchzip.errors import ConfigError, OrchzipError
from orchzip.runtime import environments

__all__ = ["MODEL_PACKAGES", "FRAMEWORK_PACKAGES", "ensure_model_env", "with_model_env", "with_model_envs", "model_requirements"]

# What every model worker needs (numpy, pyarrow) and what Wallaroo's Python runtime has (pandas).
MODEL_PACKAGES = ("numpy", "pyarrow", "pandas")
# What a framework's loader imports besides (loaders/<framework>.py).
FRAMEWORK_PACKAGES = {
    "python": (),
    "custom": (),
    # As Wallaroo's runtime has them: its SKLearn and XGBoost guides list scikit-learn==1.3.0 and
    # xgboost==1.7.4 (the tutorials' own XGBoost pickles were written by 1.7.4; the xgboost
    # loader needs scikit-learn for XGBClassifier & co.). Both were built against numpy 1.x.
    "sklearn": ("scikit-learn==1.3.0", "numpy<2"),
    "xgboost": ("xgboost==1.7.4", "scikit-learn==1.3.0", "numpy<2"),
}


def model_requirements(path):
    """The text of the model's requirements.txt: beside its files in its folder or .zip, else ""."""
    if os.path.isdir(path):
        candidate = os.path.join(path, "requirements.txt")
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        return ""
    if os.path.isfile(path) and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if os.path.basename(n) == "requirements.txt"]
            names.sort(key=lambda n: n.count("/"))  # the shallowest: the model's own
            if names:
                return io.TextIOWrapper(archive.open(names[0]), encoding="utf-8", errors="replace").read()
    return ""


def ensure_model_env(spec_or_framework, requirements=None, on_progress=None, cache_dir=None, python=None,
                     wallaroo_version=None):
    """The python of the model's cached environment, built now unless it is cached.

    :param spec_or_framework: a model spec (its ``framework`` and ``path``), or a framework name.
    :param requirements: the requirements: text, a list of lines, or a path to a file; default:
        the requirements.txt in the spec's model folder or .zip.
    :param on_progress: called with one line of text at a time while the environment builds.
    :raises RequirementsNotInstallable: uv could not install them (its reason in the message).
    """
    if isinstance(spec_or_framework, dict):
        framework = spec_or_framework.get("framework")
        if requirements is None and spec_or_framework.get("path"):
            requirements = model_requirements(spec_or_framework["path"])
    else:
        framework = spec_or_framework
    framework = str(framework or "").lower()
    if framework not in FRAMEWORK_PACKAGES:
        raise ConfigError(f"no model environment for framework {framework!r} "
                          f"(known: {', '.join(sorted(FRAMEWORK_PACKAGES))})")
    text = _requirements_text(requirements)
    packages = MODEL_PACKAGES + tuple(FRAMEWORK_PACKAGES[framework])
    env = environments.ensure_environment(
        cache_dir or environments.default_cache_dir(), text, python=python, on_progress=on_progress,
        wallaroo_version=wallaroo_version, packages=packages, kind="model")
    return env.python


def with_model_env(spec, on_progress=None, cache_dir=None):
    """``spec`` with a working ``python``: the same when its environment is there, else rebuilt.

    For whoever hands specs to workers (a task's context, serve): an environment cache that was
    cleared, or a machine the state directory was copied to, rebuilds the model's environment
    instead of failing. ONNX specs come back unchanged.
    """
    if (spec.get("framework") or "onnx") == "onnx":
        return spec
    python = spec.get("python")
    if python and os.path.exists(python):
        return spec
    return dict(spec, python=ensure_model_env(spec, on_progress=on_progress, cache_dir=cache_dir))


def with_model_envs(specs, on_progress=None, cache_dir=None):
    """Each spec through :func:`with_model_env`, for a task's context that names every pipeline.

    A spec whose environment cannot be rebuilt now (no network, a requirement gone) stays as it
    is, so only a run that infers through that step fails, with the worker's one line, rather
    than every run of the state.
    """
    ready = []
    for spec in specs:
        try:
            ready.append(with_model_env(spec, on_progress=on_progress, cache_dir=cache_dir))
        except OrchzipError:
            ready.append(spec)
    return ready


def _requirements_text(requirements):
    if requirements is None:
        return ""
    if isinstance(requirements, (list, tuple)):
        return "".join(f"{line}\n" for line in requirements)
    if "\n" not in requirements and os.path.isfile(requirements):
        with open(requirements, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    return requirements
