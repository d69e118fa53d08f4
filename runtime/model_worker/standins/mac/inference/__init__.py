"""Inference classes: what a BYOP model's builder creates."""

from .inference import Inference

__all__ = ["Inference"]
