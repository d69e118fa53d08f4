"""Models: local ONNX files, uploaded by name for the task's process or taken from a pipeline."""

import base64
import os

from orchzip_shim.errors import ConfigError

from ._local import LocalSurface, NotAvailableLocally
from .framework import Framework

__all__ = ["Model", "ModelVersion"]


class Model(LocalSurface):
    """A model version: a name, a version and the model's local file (``path``).

    ``spec()`` is the model spec the shim runs (see orchzip_shim.pipelines): framework,
    path, schemas, and for non-ONNX models the python of the model's own environment.
    """

    _surface_name = "wallaroo.Model"

    def __init__(self, name, path, id, tensor_column=None, version="1", spec=None):
        self._name = name
        self.path = path
        self._id = id
        self.tensor_column = tensor_column
        self._version = str(version)
        self._spec = dict(spec or {"framework": "onnx"})

    def name(self):
        return self._name

    def id(self):
        return self._id

    def version(self):
        return self._version

    def framework(self):
        return Framework(self._spec.get("framework") or "onnx")

    def spec(self):
        return dict(self._spec, name=self._name, version=self._version, path=self.path,
                    tensor_column=self.tensor_column if self._spec.get("framework", "onnx") == "onnx" else None)

    def configure(self, runtime=None, tensor_fields=None, **_ignored):
        """Accepted as on Wallaroo; ``tensor_fields=[column]`` names the model's input column."""
        if tensor_fields:
            self.tensor_column = list(tensor_fields)[0]
        return self

    def __eq__(self, other):
        return isinstance(other, Model) and (other._name, other._version, other.path) == (
            self._name, self._version, self.path)

    def __hash__(self):
        return hash((self._name, self._version))

    def __repr__(self):
        return f"Model(name={self._name!r}, version={self._version!r}, file={os.path.basename(self.path)!r})"


ModelVersion = Model


# Frameworks whose models run in worker processes of their own environments (orchzip_shim.model_workers).
WORKER_FRAMEWORKS = ("python", "custom", "sklearn", "xgboost")
CHECK_TIMEOUT = 1800  # seconds: the first check of a framework builds its environment


def check_framework(name, framework, path, input_schema=None, output_schema=None):
    """The spec fields of a model uploaded in the task (see ``Model.spec``), or one line why not."""
    value = getattr(framework, "value", framework)
    value = str(value).lower() if value is not None else ("onnx" if path.lower().endswith(".onnx") else None)
    schemas = {"input_schema": _encoded(input_schema, "input_schema"),
               "output_schema": _encoded(output_schema, "output_schema")}
    if value == Framework.ONNX.value:
        if not os.path.exists(path):
            raise ConfigError(f"upload_model({name!r}): the model file {path} does not exist")
        if not os.path.isfile(path):
            raise ConfigError(f"upload_model({name!r}): an ONNX model is a file, and {path} is not one")
        return {"framework": "onnx", **schemas}
    if value in WORKER_FRAMEWORKS:
        return _checked_by_orchzip(name, value, path, schemas)
    raise NotAvailableLocally(
        f"wallaroo.Client.upload_model with framework {value or 'unknown'} for {path} is not "
        f"available in an orchzip local run (local pipelines run {', '.join(('onnx',) + WORKER_FRAMEWORKS)} models)"
    )


def _checked_by_orchzip(name, framework, path, schemas):
    """The spec fields of a non-ONNX model, from orchzip's check at the door (runtime/model_check.py)."""
    import json
    import subprocess

    from ._local import state
    python = state().context.get("orchzip_python")
    if not python:
        raise NotAvailableLocally(f"wallaroo.Client.upload_model of a {framework} model needs a run started by "
                                  f"a newer 'orchzip run'")
    if not os.path.exists(path):
        raise ConfigError(f"upload_model({name!r}): the model file {path} does not exist")
    request = {"name": name, "framework": framework, "path": path, **schemas}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ORCHZIP_CONTEXT")}
    try:
        done = subprocess.run([python, "-m", "orchzip.runtime.model_check"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=CHECK_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"upload_model({name!r}): checking the model took over {CHECK_TIMEOUT} s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise ConfigError(f"upload_model({name!r}): {lines[-1] if lines else 'the model check failed'}")
    return dict(json.loads(done.stdout), framework=framework)


def _encoded(schema, what):
    """A ``pyarrow.Schema`` as the model spec carries it (base64 of its IPC form)."""
    if schema is None:
        return None
    import pyarrow as pa
    if not isinstance(schema, pa.Schema):
        from ._local import sdk_error
        raise sdk_error(f"{what} must be a pyarrow.Schema, not {type(schema).__name__}",
                        f"give it as pa.schema([pa.field(name, type), ...])", TypeError)
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")
