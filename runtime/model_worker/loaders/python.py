"""Wallaroo Python models (``Framework.PYTHON``): a .py file, or a folder/.zip of them.

Checked as Wallaroo's Python runtime checks them: among the functions of the top-level
modules there is exactly one named ``process_data``, declared
``def process_data(input_data: InferenceData) -> InferenceData`` (``async def`` too) with
``InferenceData`` from ``mac.types`` (``Dict[str, npt.NDArray]``; the annotations are compared
with it, so ``dict[str, np.ndarray]`` or string annotations are refused there and here).
Models of the older form, one ``wallaroo_json(data: pandas.DataFrame)`` returning a DataFrame,
a dict of columns or a list of records, run too (they need pandas in the model's
environment, as Wallaroo's runtime had it).
"""

import asyncio
import inspect
import os

import numpy as np

from . import ModelLoadError
from ._files import import_file, model_folder

__all__ = ["load"]

SIGNATURE = "def process_data(input_data: InferenceData) -> InferenceData (InferenceData from mac.types)"


def load(path, spec):
    _folder, files = model_folder(path)
    if not files:
        raise ModelLoadError(f"{path} holds no .py file; a Python model is a .py file with a process_data function")
    steps, legacy = [], []
    for file in files:
        module = import_file(file)
        for name, func in inspect.getmembers(module, inspect.isfunction):
            if name == "process_data":
                _check_signature(func, file)
                steps.append((file, func))
            elif name == "wallaroo_json":
                legacy.append((file, func))
    if len(steps) > 1:
        raise ModelLoadError("found several process_data functions (in " + ", ".join(
            os.path.basename(f) for f, _ in steps) + "); a Python model has exactly one")
    if steps:
        return _caller(steps[0][1])
    if len(legacy) == 1:
        return _legacy_caller(legacy[0][1])
    if len(legacy) > 1:
        raise ModelLoadError("found several wallaroo_json functions; a Python model has exactly one")
    raise ModelLoadError(f"no process_data function in {', '.join(os.path.basename(f) for f in files)}; "
                         f"a Python model defines {SIGNATURE}")


def _check_signature(func, file):
    from mac.types import InferenceData  # our stand-in, or the real mac if the model's env has it
    signature = inspect.signature(func)
    params = list(signature.parameters.items())
    if (len(params) == 1 and params[0][0] == "input_data" and params[0][1].annotation == InferenceData
            and signature.return_annotation == InferenceData):
        return
    raise ModelLoadError(f"process_data in {os.path.basename(file)} is declared process_data{signature}; "
                         f"Wallaroo requires {SIGNATURE}")


def _caller(func):
    if not inspect.iscoroutinefunction(func):
        return func
    loop = asyncio.new_event_loop()
    return lambda data: loop.run_until_complete(func(data))


def _legacy_caller(func):
    try:
        import pandas as pd
    except ImportError:
        raise ModelLoadError("a wallaroo_json model takes a pandas DataFrame: add pandas to the model's "
                             "requirements.txt") from None

    def call(arrays):
        frame = pd.DataFrame({k: list(v) if v.ndim > 1 else v for k, v in arrays.items()})
        return _columns(func(frame), pd)

    return call


def _columns(result, pd):
    """The legacy answer as ``{column: values}``: a DataFrame, a dict of columns or a list of records."""
    if isinstance(result, list):
        result = pd.DataFrame.from_records(result)
    if isinstance(result, pd.DataFrame):
        return {name: _values(result[name]) for name in result.columns}
    return result


def _values(series):
    data = series.to_numpy()
    if data.dtype == object:
        out = np.empty(len(data), dtype=object)
        out[:] = list(data)
        return out
    return data
