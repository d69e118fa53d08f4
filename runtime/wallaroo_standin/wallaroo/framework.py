"""Model frameworks and their configurations, by the names the wallaroo SDK gives them.

Local pipelines run ONNX models; the other frameworks are named so orchestrations import,
and uploading a model of one fails with one line (see ``model.check_framework``).
"""

from enum import Enum

from ._settings import Settings

__all__ = ["Framework", "FrameworkConfig", "CustomConfig", "VLLMConfig", "SGLangConfig"]


class Framework(str, Enum):
    ONNX = "onnx"
    TENSORFLOW = "tensorflow"
    PYTHON = "python"
    KERAS = "keras"
    SKLEARN = "sklearn"
    PYTORCH = "pytorch"
    XGBOOST = "xgboost"
    HUGGING_FACE_AUTOMATIC_SPEECH_RECOGNITION = "hugging-face-automatic-speech-recognition"
    HUGGING_FACE_FEATURE_EXTRACTION = "hugging-face-feature-extraction"
    HUGGING_FACE_IMAGE_CLASSIFICATION = "hugging-face-image-classification"
    HUGGING_FACE_IMAGE_SEGMENTATION = "hugging-face-image-segmentation"
    HUGGING_FACE_IMAGE_TO_TEXT = "hugging-face-image-to-text"
    HUGGING_FACE_OBJECT_DETECTION = "hugging-face-object-detection"
    HUGGING_FACE_QUESTION_ANSWERING = "hugging-face-question-answering"
    HUGGING_FACE_STABLE_DIFFUSION_TEXT_2_IMG = "hugging-face-stable-diffusion-text-2-img"
    HUGGING_FACE_SUMMARIZATION = "hugging-face-summarization"
    HUGGING_FACE_TEXT_CLASSIFICATION = "hugging-face-text-classification"
    HUGGING_FACE_TRANSLATION = "hugging-face-translation"
    HUGGING_FACE_ZERO_SHOT_CLASSIFICATION = "hugging-face-zero-shot-classification"
    HUGGING_FACE_ZERO_SHOT_IMAGE_CLASSIFICATION = "hugging-face-zero-shot-image-classification"
    HUGGING_FACE_ZERO_SHOT_OBJECT_DETECTION = "hugging-face-zero-shot-object-detection"
    HUGGING_FACE_SENTIMENT_ANALYSIS = "hugging-face-sentiment-analysis"
    HUGGING_FACE_TEXT_GENERATION = "hugging-face-text-generation"
    CUSTOM = "custom"
    VLLM = "vllm"
    SGLANG = "sglang"

    def requires_config(self):
        return self in (Framework.CUSTOM, Framework.VLLM, Framework.SGLANG)

    def __str__(self):
        return self.value


class FrameworkConfig(Settings):
    """A framework's settings, recorded as given."""


class CustomConfig(FrameworkConfig):
    pass


class VLLMConfig(FrameworkConfig):
    pass


class SGLangConfig(FrameworkConfig):
    pass
