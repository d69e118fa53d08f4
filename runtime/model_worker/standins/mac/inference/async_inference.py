"""``AsyncInference``: an Inference whose ``_predict`` is a coroutine (async model clients)."""

from abc import ABC, abstractmethod
from typing import Any, Optional, Set

from ..exceptions import ModelNotAssignedError
from ..types import InferenceData

__all__ = ["AsyncInference"]


class AsyncInference(ABC):
    def __init__(self) -> None:
        self._model: Optional[Any] = None

    @property
    @abstractmethod
    def expected_model_types(self) -> Set[Any]:
        """The types a model assigned to this inference may have."""

    @property
    def model(self) -> Any:
        return self._model

    async def predict(self, input_data: InferenceData) -> InferenceData:
        self._raise_error_if_model_is_not_assigned()
        return await self._predict(input_data)

    @abstractmethod
    async def _predict(self, input_data: InferenceData) -> InferenceData:
        """The model's answer for ``input_data``, awaited."""

    def _raise_error_if_model_is_not_assigned(self) -> None:
        if self.model is None:
            raise ModelNotAssignedError("The model is not assigned to the AsyncInference object.")

    def _raise_error_if_model_is_wrong_type(self, model: Any) -> None:
        expected = self.expected_model_types
        if not any(isinstance(model, kind) for kind in expected):
            names = sorted(getattr(kind, "__name__", str(kind)) for kind in expected)
            raise TypeError(f"The model is not of type(s): {names}. Got type '{type(model).__name__}' instead.")
