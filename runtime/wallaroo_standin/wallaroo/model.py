"""Models: local ONNX files, uploaded by name for the task's process or taken from a pipeline."""

import os

from ._local import LocalSurface, NotAvailableLocally
from .framework import Framework

__all__ = ["Model", "ModelVersion"]


class Model(LocalSurface):
    """A model version: a name and a local .onnx file (``path``)."""

    _surface_name = "wallaroo.Model"

    def __init__(self, name, path, id, tensor_column=None, version="1"):
        self._name = name
        self.path = path
        self._id = id
        self.tensor_column = tensor_column
        self._version = version

    def name(self):
        return self._name

    def id(self):
        return self._id

    def version(self):
        return self._version

    def framework(self):
        return Framework.ONNX

    def configure(self, runtime=None, tensor_fields=None, **_ignored):
        """Accepted as on Wallaroo; ``tensor_fields=[column]`` names the model's input column."""
        if tensor_fields:
            self.tensor_column = list(tensor_fields)[0]
        return self

    def __repr__(self):
        return f"Model(name={self._name!r}, version={self._version!r}, file={os.path.basename(self.path)!r})"


ModelVersion = Model


def check_framework(framework, path):
    value = getattr(framework, "value", framework)
    if value is None and path.lower().endswith(".onnx"):
        return
    if value is not None and str(value).lower() == Framework.ONNX.value:
        return
    raise NotAvailableLocally(
        f"wallaroo.Client.upload_model with framework {value or 'unknown'} for {path} is not "
        f"available in an orchzip local run (local pipelines run ONNX models: "
        f"framework=Framework.ONNX and a .onnx file)"
    )
