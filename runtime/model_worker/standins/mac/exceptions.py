"""The errors of the interface."""

__all__ = ["MACError", "ModelNotAssignedError", "InferenceDataValidationError"]


class MACError(Exception):
    """Base of the interface's errors."""


class ModelNotAssignedError(MACError):
    """``predict`` was called on an Inference whose model was never set."""


class InferenceDataValidationError(MACError):
    """The input data does not fit what the Inference expects."""
