"""Inference classes: what a BYOP model's builder creates."""

from .async_inference import AsyncInference
from .inference import Inference

__all__ = ["Inference", "AsyncInference"]
