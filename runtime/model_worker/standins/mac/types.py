"""The types models are annotated with."""

from typing import Callable, Dict

import numpy.typing as npt

__all__ = ["InferenceData", "PythonStep"]

# What a Python step and a BYOP model take and return: one array per field, N rows each.
InferenceData = Dict[str, npt.NDArray]
PythonStep = Callable[[InferenceData], InferenceData]
