"""scikit-learn and XGBoost models at upload: the checks Wallaroo makes, and their environment.

Wallaroo's upload guides for ``Framework.SKLEARN`` and ``Framework.XGBOOST`` (and the SDK,
which raises "parameter 'input_schema' required for this framework") fix what is checked here:

* both schemas are required; the input schema is one list column or scalar columns of one
  numeric type, the output schema names ``predictions`` / ``probabilities`` (see
  ``model_worker/loaders/_tabular.py``);
* scikit-learn models are pickle or joblib files; XGBoost models are pickles only ("XGB files
  are not supported");
* the runtime has ``scikit-learn==1.3.0`` and ``xgboost==1.7.4`` (the guides' "Supported
  Libraries"; the tutorials' own XGBoost pickles were written by 1.7.4).

The model is then loaded once, in its own environment, by the same loader that serves it, so
a schema that does not fit the model (a wrong width, probabilities of a regressor) is one line
at upload rather than an error at the first inference.
"""

import base64
import json
import os
import subprocess

from orchzip.errors import ConfigError, ModelError

__all__ = [
    "FRAMEWORKS",
    "REQUIREMENTS",
    "BadModelUpload",
    "check_upload",
    "serialize_schema",
    "ensure_framework_env",
    "LOADERS_PARENT",
]

FRAMEWORKS = ("sklearn", "xgboost")
# What Wallaroo's runtime for each framework has (see the module docstring). numpy stays
# below 2: scikit-learn 1.3.0 and xgboost 1.7.4 were built against numpy 1.x.
REQUIREMENTS = {
    "sklearn": ("scikit-learn==1.3.0", "numpy<2"),
    "xgboost": ("xgboost==1.7.4", "scikit-learn==1.3.0", "numpy<2"),
}
# The folder holding the loaders package; the worker imports ``loaders.<framework>`` from it.
LOADERS_PARENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_worker")
PROBE_TIMEOUT_SECONDS = 300


class BadModelUpload(ModelError):
    """The model file or its schemas are not what Wallaroo takes; the message says what to fix."""


def serialize_schema(schema):
    """The spec's form of a schema: base64 of ``schema.serialize()``; text passes unchanged."""
    if schema is None or isinstance(schema, str):
        return schema
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def _parse_schema(name, text, key):
    import pyarrow as pa

    try:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
    except Exception:
        raise BadModelUpload(f"model {name!r}: the {key} is not a serialized pyarrow schema") from None


def check_static(name, framework, path, input_schema, output_schema):
    """What can be checked without the model's environment: schemas present and sound, a file.

    :returns: ``(input_schema, output_schema)`` as spec text.
    """
    from orchzip.runtime.model_worker.loaders import _tabular

    label = {"sklearn": "scikit-learn", "xgboost": "XGBoost"}[framework]
    for key, value in (("input_schema", input_schema), ("output_schema", output_schema)):
        if value is None:
            raise BadModelUpload(
                f"model {name!r}: a {label} model needs an {key.replace('_', ' ')}, as Wallaroo requires "
                f"(e.g. {_example(key)})")
    if os.path.isdir(path) or not os.path.isfile(path):
        raise BadModelUpload(f"model {name!r}: {path} is not a file; a {label} model is one pickle file")
    texts = serialize_schema(input_schema), serialize_schema(output_schema)
    try:
        _tabular.InputLayout(_parse_schema(name, texts[0], "input schema"))
        for field in _parse_schema(name, texts[1], "output schema"):
            _tabular._numpy_type(field.type.value_type if _tabular._is_list(field.type) else field.type)
    except _tabular.SchemaMismatch as err:
        raise BadModelUpload(f"model {name!r}: {err}") from None
    return texts


def _example(key):
    if key == "input_schema":
        return "pa.schema([pa.field('inputs', pa.list_(pa.float64(), list_size=4))])"
    return "pa.schema([pa.field('predictions', pa.float64())])"


def ensure_framework_env(framework, on_progress=None):
    """The Python of the cached environment that runs ``framework`` models (built on first use)."""
    from orchzip.runtime import environments

    requirements = "\n".join(REQUIREMENTS[framework]) + "\n"
    env = environments.ensure_environment(environments.default_cache_dir(), requirements,
                                          on_progress=on_progress)
    return env.python


_PROBE = """
import contextlib, json, sys
sys.path.insert(0, sys.argv[1])
spec = json.loads(sys.argv[2])
try:
    import importlib
    # The model's own prints (xgboost logs through print) must not pass for our answer.
    with contextlib.redirect_stdout(sys.stderr):
        importlib.import_module("loaders." + spec["framework"]).load(spec["path"], spec)
except Exception as err:
    text = str(err).strip().splitlines()
    print(json.dumps({"error": text[0] if text else type(err).__name__, "type": type(err).__name__}))
else:
    print(json.dumps({"ok": True}))
"""


def probe(name, spec, python):
    """Load the model once with its loader in its environment; a failure becomes one line."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    try:
        done = subprocess.run([python, "-c", _PROBE, LOADERS_PARENT, json.dumps(spec)], capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_SECONDS, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BadModelUpload(f"model {name!r}: loading it took over {PROBE_TIMEOUT_SECONDS} s") from None
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"model {name!r}: the {spec['framework']} environment could not load the model "
                          f"({tail})") from None
    if "error" in answer:
        raise BadModelUpload(f"model {name!r}: {answer['error']}")


def check_upload(name, framework, path, input_schema=None, output_schema=None, python=None, on_progress=None):
    """Check a scikit-learn or XGBoost model as Wallaroo does at upload, and load it once.

    :param path: the model file (the stored copy, or the user's before it is stored).
    :param input_schema: a ``pyarrow.Schema`` or the spec's base64 text; required.
    :param output_schema: the same; required.
    :param python: the model environment's Python (default: built or found by
        :func:`ensure_framework_env`).
    :param on_progress: called with one line at a time while the environment builds.
    :returns: the spec fields ``{"framework", "python", "input_schema", "output_schema"}``.
    :raises BadModelUpload: one line saying what is wrong and how to fix it.
    """
    if framework not in FRAMEWORKS:
        raise ConfigError(f"unknown framework {framework!r} here (known: {', '.join(FRAMEWORKS)})")
    inputs, outputs = check_static(name, framework, path, input_schema, output_schema)
    python = python or ensure_framework_env(framework, on_progress)
    spec = {"name": name, "framework": framework, "path": os.path.abspath(path),
            "input_schema": inputs, "output_schema": outputs}
    probe(name, spec, python)
    return {"framework": framework, "python": python, "input_schema": inputs, "output_schema": outputs}

