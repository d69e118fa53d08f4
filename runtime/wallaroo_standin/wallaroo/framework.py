"""Model frameworks, by the names the wallaroo SDK gives them. Local pipelines run ONNX."""

from enum import Enum

__all__ = ["Framework"]


class Framework(str, Enum):
    ONNX = "onnx"
    TENSORFLOW = "tensorflow"
    PYTHON = "python"
    KERAS = "keras"
    SKLEARN = "sklearn"
    PYTORCH = "pytorch"
    XGBOOST = "xgboost"
    HUGGING_FACE_FEATURE_EXTRACTION = "hugging-face-feature-extraction"
    HUGGING_FACE_IMAGE_CLASSIFICATION = "hugging-face-image-classification"
    HUGGING_FACE_TEXT_CLASSIFICATION = "hugging-face-text-classification"
    HUGGING_FACE_TEXT_GENERATION = "hugging-face-text-generation"
    CUSTOM = "custom"
    MLFLOW = "mlflow"
    VLLM = "vllm"

    def __str__(self):
        return self.value
