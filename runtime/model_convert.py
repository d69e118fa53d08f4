"""Convert a scikit-learn or XGBoost model to ONNX, when the user asks (``--convert-to-onnx``).

Wallaroo itself tries to turn these models into its native ONNX runtime at upload; a user who
wants the converted model locally (to serve it as ONNX, or to ship the .onnx) gets the same here.
The converters (skl2onnx for scikit-learn, onnxmltools for XGBoost) and the frameworks, pinned
as Wallaroo's runtime has them, live in a cached tool environment of their own, never in
orchzip's dependencies; the conversion itself is ``model_worker/loaders/_onnx_convert.py``,
which also runs both models on the same rows and reports how far apart they are.
"""

import json
import os
import subprocess
import tempfile

from orchzip.errors import ConfigError
from orchzip.runtime import tabular_frameworks
from orchzip.runtime.model_envs import MODEL_PACKAGES

__all__ = ["convert_to_onnx", "ensure_tool_env", "ConversionFailed", "TOLERANCE", "TOOL_REQUIREMENTS"]

# The converters, and onnxruntime to compare the converted model with the original;
# onnxmltools imports packaging without declaring it.
CONVERTERS = ("skl2onnx>=1.17", "onnxmltools>=1.12", "onnx>=1.14", "onnxruntime", "packaging")
TOOL_REQUIREMENTS = tuple(sorted(set(tabular_frameworks.REQUIREMENTS["xgboost"]) | set(CONVERTERS)))
# Largest difference between native and converted outputs (relative where values exceed 1) that
# still counts as the same model: ONNX runs trees and linear models in float32.
TOLERANCE = 1e-3
CONVERT_TIMEOUT_SECONDS = 600
CHECK_ROWS = 64  # as _onnx_convert.CHECK_ROWS


class ConversionFailed(tabular_frameworks.BadModelUpload):
    """The model could not be converted, or the converted model does not agree with it."""


def ensure_tool_env(on_progress=None):
    """The Python of the cached conversion environment (built on first use)."""
    from orchzip.runtime import environments

    env = environments.ensure_environment(environments.default_cache_dir(), "\n".join(TOOL_REQUIREMENTS) + "\n",
                                          on_progress=on_progress, packages=MODEL_PACKAGES, kind="conversion tool")
    return env.python


def convert_to_onnx(framework, path, input_schema, out_path, on_progress=None, output_schema=None, name=None):
    """Write ``path``'s model as ONNX to ``out_path``, after checking it converts faithfully.

    :param framework: ``"sklearn"`` or ``"xgboost"``.
    :param path: the pickled model.
    :param input_schema: a ``pyarrow.Schema`` or the spec's base64 text (required).
    :param out_path: where the .onnx file goes (its folder must exist).
    :param on_progress: called with one line at a time (environment build, the comparison).
    :param output_schema: names the outputs, as at upload; default: one ``predictions``
        (float64) from ``predict``. Give it to have a classifier's ``probabilities`` too.
    :returns: ``{"path", "tensor_column", "outputs", "differences"}``: the input column the ONNX
        model reads (its input is named so), its outputs, and the largest native-vs-ONNX
        difference per output.
    :raises ConversionFailed: one line saying why.
    """
    report = on_progress or (lambda _line: None)
    name = name or os.path.splitext(os.path.basename(path))[0]
    if output_schema is None:
        import pyarrow as pa
        output_schema = pa.schema([pa.field("predictions", pa.float64())])
    if framework not in tabular_frameworks.FRAMEWORKS:
        raise ConfigError(f"model {name!r}: --convert-to-onnx converts {' and '.join(tabular_frameworks.FRAMEWORKS)} "
                          f"models, not {framework}")
    tabular_frameworks.check_file(name, framework, path)
    inputs, outputs = tabular_frameworks.check_schemas(name, framework, input_schema, output_schema)
    python = ensure_tool_env(report)
    report(f"converting {os.path.basename(path)} ({framework}) to ONNX")
    result = _run(python, {"framework": framework, "path": os.path.abspath(path), "out_path": os.path.abspath(out_path),
                           "input_schema": inputs, "output_schema": outputs, "name": name})
    if "error" in result:
        raise ConversionFailed(f"model {name!r}: cannot convert to ONNX: {result['error']}")
    worst = max(result["differences"].items(), key=lambda item: item[1], default=(None, 0.0))
    report("converted model compared with the original on {} rows: largest (relative) difference {:.2g}{}".format(
        CHECK_ROWS, worst[1], f" in {worst[0]}" if worst[0] else ""))
    if worst[1] > TOLERANCE:
        os.unlink(out_path)
        raise ConversionFailed(
            f"model {name!r}: the ONNX conversion disagrees with the original (relative difference {worst[1]:.3g}) in output "
            f"{worst[0]!r}; upload it without --convert-to-onnx")
    return {k: result[k] for k in ("path", "tensor_column", "outputs", "differences")}


def _run(python, job):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(job, fh)
    try:
        done = subprocess.run([python, "-m", "loaders._onnx_convert", fh.name], cwd=tabular_frameworks.LOADERS_PARENT,
                              capture_output=True, text=True, timeout=CONVERT_TIMEOUT_SECONDS, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ConversionFailed(f"the conversion of {job['path']} took over {CONVERT_TIMEOUT_SECONDS} s") from None
    finally:
        os.unlink(fh.name)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"the ONNX conversion tool failed: {tail}") from None
