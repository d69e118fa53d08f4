"""The check at the door for non-ONNX models: what ``orchzip models upload`` runs before storing one.

As the wallaroo SDK and Wallaroo's runtime check them:

- every framework but ONNX (and TensorFlow, which orchzip does not run) needs an input and an
  output schema (the SDK refuses the upload with "parameter 'input_schema' required for this
  framework");
- a Python model (``python``) is a .py file, or a folder/.zip of them, whose top-level modules
  define exactly one ``process_data(input_data: InferenceData) -> InferenceData`` (or, in the
  older form, one ``wallaroo_json(data)``);
- a BYOP model (``custom``) is a folder or .zip whose top-level modules define exactly one
  ``InferenceBuilder`` subclass.

The static checks read the files without running them (one line naming the file and what is
wrong); then the model's environment is built (``model_envs``) and the model is loaded once in
a real worker, which applies the runtime's own checks (the annotations compared with
``mac.types.InferenceData``, ``create()`` returning an ``Inference``).
"""

import ast
import base64
import io
import os
import zipfile

import pyarrow as pa

from orchzip.errors import ConfigError
from orchzip.runtime import model_envs, tabular_frameworks

__all__ = ["check_upload", "CHECKS", "SCHEMA_FREE", "parse_schema"]

# Frameworks Wallaroo takes without schemas (the SDK's UPLOAD_MODEL_STREAM_SUPPORTED_FLAVORS).
SCHEMA_FREE = ("onnx", "tensorflow")


def check_upload(name, framework, path, input_schema=None, output_schema=None, requirements=None,
                 on_progress=None, cache_dir=None):
    """Check a model as Wallaroo would, build its environment, load it once; the spec's fields.

    :param name: the model's registry name (for messages).
    :param framework: ``python``, ``custom``, ``sklearn`` or ``xgboost`` (their file checks in
        :data:`CHECKS`; the schemas against the model where it loads once, in the worker).
    :param path: the model's file or folder (a .py, a folder, or a .zip).
    :param input_schema: a ``pa.Schema``, or the spec's base64 text of one.
    :param output_schema: the same, for the outputs.
    :param requirements: text, lines, or a file of requirements; default: the requirements.txt
        in the model's folder or .zip.
    :param on_progress: called with one line at a time while the environment builds.
    :returns: ``{"framework", "python", "input_schema", "output_schema"}`` (schemas as base64).
    :raises ConfigError: the model or its schemas are not what Wallaroo takes (one line).
    :raises ModelError: the model does not load.
    """
    framework = str(getattr(framework, "value", framework) or "").lower()
    if framework not in CHECKS:
        raise ConfigError(f"model {name!r}: orchzip cannot run framework {framework!r} "
                          f"(it runs onnx, {', '.join(sorted(CHECKS))})")
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise ConfigError(f"model {name!r}: {path} does not exist")
    schemas = {"input_schema": parse_schema(input_schema, "input_schema", name),
               "output_schema": parse_schema(output_schema, "output_schema", name)}
    if framework not in SCHEMA_FREE:
        for key, schema in schemas.items():
            if schema is None:
                raise ConfigError(f"model {name!r}: framework {framework} needs {key} (a pyarrow schema), "
                                  f"as Wallaroo does (\"parameter '{key}' required for this framework\")")
    CHECKS[framework](name, path)
    python = model_envs.ensure_model_env(framework, requirements if requirements is not None
                                         else model_envs.model_requirements(path),
                                         on_progress=on_progress, cache_dir=cache_dir)
    spec = {"name": name, "framework": framework, "path": path, "python": python,
            **{key: _encode(schema) for key, schema in schemas.items()}}
    _load_once(spec)
    return {key: spec[key] for key in ("framework", "python", "input_schema", "output_schema")}


def parse_schema(value, what, name):
    """A ``pa.Schema`` from a schema, its serialized bytes or their base64 text; None stays None."""
    if value is None or isinstance(value, pa.Schema):
        return value
    try:
        raw = value if isinstance(value, (bytes, bytearray)) else base64.b64decode(value, validate=True)
        return pa.ipc.read_schema(pa.py_buffer(raw))
    except (ValueError, TypeError, pa.ArrowInvalid) as err:
        raise ConfigError(f"model {name!r}: {what} is not a pyarrow schema nor the base64 of one "
                          f"(schema.serialize()): {err}") from None


def _encode(schema):
    return None if schema is None else base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def _load_once(spec):
    from orchzip_shim.model_workers import WorkerStep
    step = WorkerStep(spec)
    try:
        step.start()
    finally:
        step.close()


# -- static checks ---------------------------------------------------------------------------

def _sources(name, path, what):
    """``[(file name, source text)]`` of the model's top-level .py files (file, folder or .zip)."""
    if os.path.isfile(path) and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            files = [n for n in archive.namelist() if n.endswith(".py") and not n.startswith("__MACOSX")]
            top = min((n.count("/") for n in files), default=0)
            return [(n, io.TextIOWrapper(archive.open(n), encoding="utf-8", errors="replace").read())
                    for n in sorted(files) if n.count("/") == top]
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".py"))
        return [(n, _read(os.path.join(path, n))) for n in names]
    if path.endswith(".py"):
        return [(os.path.basename(path), _read(path))]
    raise ConfigError(f"model {name!r}: {path} is not {what}")


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _parse(name, file, source):
    try:
        return ast.parse(source, filename=file)
    except SyntaxError as err:
        raise ConfigError(f"model {name!r}: {file} line {err.lineno}: {err.msg}") from None


def _check_python(name, path):
    sources = _sources(name, path, "a .py file, a folder or a .zip of Python files")
    if not sources:
        raise ConfigError(f"model {name!r}: {path} holds no .py file")
    steps, legacy = [], []
    for file, source in sources:
        for node in _parse(name, file, source).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name == "process_data":
                    steps.append((file, node))
                elif node.name == "wallaroo_json":
                    legacy.append((file, node))
    if len(steps) > 1:
        raise ConfigError(f"model {name!r}: process_data is defined {len(steps)} times ("
                          + ", ".join(f"{f} line {n.lineno}" for f, n in steps) + "); a Python model has exactly one")
    if steps:
        file, node = steps[0]
        args = node.args
        params = args.posonlyargs + args.args + args.kwonlyargs
        if (len(params) != 1 or args.vararg or args.kwarg or params[0].arg != "input_data"
                or params[0].annotation is None or node.returns is None):
            raise ConfigError(
                f"model {name!r}: {file} line {node.lineno}: process_data must be declared "
                f"def process_data(input_data: InferenceData) -> InferenceData (from mac.types import InferenceData)")
        return
    if len(legacy) == 1:
        return
    raise ConfigError(f"model {name!r}: no process_data function in {', '.join(f for f, _ in sources)}; "
                      f"a Python model defines def process_data(input_data: InferenceData) -> InferenceData")


def _check_custom(name, path):
    if not (os.path.isdir(path) or (os.path.isfile(path) and zipfile.is_zipfile(path))):
        raise ConfigError(f"model {name!r}: a BYOP (custom) model is a folder or a .zip of Python files, "
                          f"not {path}")
    sources = _sources(name, path, "a folder or a .zip")
    builders = []
    for file, source in sources:
        for node in _parse(name, file, source).body:
            if isinstance(node, ast.ClassDef) and any(_base_name(b) == "InferenceBuilder" for b in node.bases):
                builders.append((file, node))
    if len(builders) > 1:
        raise ConfigError(f"model {name!r}: several InferenceBuilder subclasses ("
                          + ", ".join(f"{n.name} in {f}" for f, n in builders) + "); a BYOP model has exactly one")
    if not builders:
        raise ConfigError(f"model {name!r}: no InferenceBuilder subclass in "
                          f"{', '.join(f for f, _ in sources) or 'its files'}; a BYOP model defines one "
                          f"(from mac.inference.creation import InferenceBuilder) whose create(config) "
                          f"returns an Inference")


def _base_name(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


# framework -> check(name, path): raises ConfigError with one line. Other frameworks add theirs.
CHECKS = {"python": _check_python, "custom": _check_custom, **tabular_frameworks.CHECKS}
