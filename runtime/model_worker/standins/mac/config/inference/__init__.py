"""The config a BYOP model's ``InferenceBuilder.create`` receives."""

from ..python_step import CustomStepConfig

__all__ = ["CustomInferenceConfig"]


class CustomInferenceConfig(CustomStepConfig):
    """``model_path`` is the BYOP model's folder; ``framework`` is ``custom``."""
