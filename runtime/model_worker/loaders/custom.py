"""BYOP / arbitrary-Python models (``Framework.CUSTOM``): a folder (or .zip) of Python files.

Loaded as Wallaroo's runtime loads them: the top-level ``*.py`` files are imported and among
their classes there is exactly one subclass of ``mac.inference.creation.InferenceBuilder``; an
instance's ``create(config)`` gets a ``CustomInferenceConfig`` whose ``model_path`` is the
model's folder and returns a ``mac.inference.Inference`` (with ``expected_model_types`` and
``_predict``) or an ``AsyncInference`` (whose ``_predict`` is a coroutine); each batch goes
through its ``predict`` (which checks a model is assigned, then calls ``_predict``). The folder's requirements.txt is installed into the model's own
environment before the worker starts (see ``runtime/model_envs.py``).
"""

import asyncio
import inspect
import os
from pathlib import Path

from . import ModelLoadError
from ._files import import_file, model_folder

__all__ = ["load"]


def load(path, spec):
    from mac.config.inference import CustomInferenceConfig
    from mac.inference import AsyncInference, Inference
    from mac.inference.creation import InferenceBuilder

    if not (os.path.isdir(path) or path.endswith(".zip")):
        raise ModelLoadError(f"{path} is not a folder or a .zip; a BYOP model is a folder of Python files "
                             f"with one InferenceBuilder subclass")
    folder, files = model_folder(path)
    if not files:
        raise ModelLoadError(f"{path} holds no .py file at its top level")
    builders = []
    for file in files:
        module = import_file(file)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, InferenceBuilder) and name != InferenceBuilder.__name__:
                builders.append((file, name, cls))
    if len(builders) > 1:
        raise ModelLoadError("found several InferenceBuilder subclasses (" + ", ".join(
            f"{n} in {os.path.basename(f)}" for f, n, _ in builders) + "); a BYOP model has exactly one")
    if not builders:
        raise ModelLoadError(f"no InferenceBuilder subclass in {', '.join(os.path.basename(f) for f in files)}; "
                             f"a BYOP model defines one whose create(config) returns an Inference")
    file, name, builder = builders[0]
    config = CustomInferenceConfig(framework="custom", model_path=Path(folder), modules_to_include={Path("*.py")})
    inference = builder().create(config)
    if isinstance(inference, AsyncInference):
        loop = asyncio.new_event_loop()
        return lambda data: loop.run_until_complete(inference.predict(data))
    if not isinstance(inference, Inference):
        raise ModelLoadError(f"{name}.create() in {os.path.basename(file)} returned "
                             f"{type(inference).__name__}, not a mac.inference.Inference")
    return inference.predict
