"""``InferenceBuilder``: the one class a BYOP model's files define a subclass of."""

from abc import ABC, abstractmethod
from typing import Any, Optional

from ..inference import Inference

__all__ = ["InferenceBuilder"]


class InferenceBuilder(ABC):
    def __init__(self) -> None:
        self._custom_config: Optional[Any] = None

    @property
    def custom_config(self) -> Optional[Any]:
        """The framework config given at upload (none locally)."""
        return self._custom_config

    @custom_config.setter
    def custom_config(self, value: Any) -> None:
        self._custom_config = value

    @property
    @abstractmethod
    def inference(self) -> Inference:
        """The Inference subclass ``create`` instantiates."""

    @abstractmethod
    def create(self, config: Any) -> Inference:
        """An Inference with its model assigned, loaded from ``config.model_path``."""
