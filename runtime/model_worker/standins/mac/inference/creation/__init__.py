"""Builders that create an Inference from a model's folder."""

from .inference_builder import InferenceBuilder

__all__ = ["InferenceBuilder"]
