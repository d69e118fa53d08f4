"""Processor architectures and accelerators, by the names the wallaroo SDK gives them.

A local pipeline runs on this machine's CPU whatever a deployment asks for.
"""

from enum import Enum

from ._settings import Settings

__all__ = ["Architecture", "Acceleration", "QaicConfig"]


class Architecture(str, Enum):
    X86 = "x86"
    ARM = "arm"
    Power10 = "power10"

    @classmethod
    def default(cls):
        return cls.X86

    def __str__(self):
        return str(self.value)


class Acceleration(str, Enum):
    _None = "none"
    CUDA = "cuda"
    Jetson = "jetson"
    OpenVINO = "openvino"
    QAIC = "qaic"
    ROCM = "rocm"

    @classmethod
    def default(cls):
        return cls._None

    def __str__(self):
        return str(self.value)

    def with_config(self, config):
        return (self, config)


class QaicConfig(Settings):
    """Settings of a Qualcomm AI accelerator (``num_cores``, ``num_devices``, ...), recorded only."""
