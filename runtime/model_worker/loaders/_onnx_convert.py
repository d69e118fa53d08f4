"""Convert a scikit-learn or XGBoost model to ONNX that takes and gives what the native one does.

Run in the conversion tool's environment (skl2onnx, onnxmltools, onnx, onnxruntime and the
framework as Wallaroo has it) as ``python -m loaders._onnx_convert JOB.json`` from the folder
above ``loaders``; prints one JSON line: the result, or ``{"error": "..."}``.

The ONNX model has one float input named like the input column (so orchzip's ONNX step feeds
it from that column) and one output per output-schema field, named like the field, shaped
[N] for a scalar and [N, k] for a list, in the field's type; so ``out.predictions`` and
``out.probabilities`` mean the same natively and converted. Opsets stay within what
Wallaroo's ONNX runtime takes (ONNX 1.12: opset 17, ML opset 3, IR 8). Before answering, the
script runs both models on the same rows and reports the largest difference per output.
"""

import contextlib
import json
import sys

import numpy as np

from . import ModelLoadError, _tabular

MAX_OPSET, MAX_ML_OPSET, MAX_IR = 17, 3, 8
CHECK_ROWS = 64


class ConversionError(ModelLoadError, ValueError):
    """The model cannot be converted; ``str(err)`` is one line."""


def main(argv):
    job = json.loads(open(argv[1], encoding="utf-8").read())
    try:
        with contextlib.redirect_stdout(sys.stderr):  # converters and xgboost print freely
            result = convert(job)
    except Exception as err:  # every failure goes back as one line, never a traceback
        text = str(err).strip().splitlines()
        result = {"error": text[0] if text else type(err).__name__, "type": type(err).__name__}
    print(json.dumps(result))


def convert(job):
    framework = job["framework"]
    loader = __import__(f"loaders.{framework}", fromlist=["load"])
    model = loader.read_model(job["path"])
    native = loader.load(job["path"], job)
    layout = native.layout
    width = layout.width or getattr(model, "n_features_in_", None)
    if framework == "xgboost" and width is None and hasattr(model, "num_features"):
        width = model.num_features()
    if not width:
        raise ConversionError("the input schema's list has no fixed size and the model does not say how "
                              "many features it takes: give the list a size, e.g. pa.list_(pa.float64(), list_size=4)")
    input_name = layout.columns[0] if len(layout.columns) == 1 else "features"
    onnx_model = (_from_sklearn(model, input_name, width) if framework == "sklearn"
                  else _from_xgboost(model, input_name, width))
    onnx_model = _name_outputs(onnx_model, native, model, framework)
    with open(job["out_path"], "wb") as fh:
        fh.write(onnx_model.SerializeToString())
    differences = _compare(job["out_path"], native, input_name, width)
    return {"path": job["out_path"], "input": input_name,
            "tensor_column": layout.columns[0] if len(layout.columns) == 1 else None,
            "outputs": list(native.methods), "differences": differences}


def _from_sklearn(model, input_name, width):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    try:
        return convert_sklearn(model, initial_types=[(input_name, FloatTensorType([None, width]))],
                               target_opset={"": MAX_OPSET, "ai.onnx.ml": MAX_ML_OPSET}, options=options)
    except Exception as err:  # skl2onnx names the estimator it has no converter for
        raise ConversionError(f"skl2onnx cannot convert this {type(model).__name__}: {_first_line(err)}") from None


def _from_xgboost(model, input_name, width):
    import xgboost
    from onnxmltools.convert import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = model if isinstance(model, xgboost.Booster) else model.get_booster()
    # onnxmltools reads features as f0, f1, ...: names from a training DataFrame would stop it.
    booster.feature_names = None
    try:
        return convert_xgboost(model, initial_types=[(input_name, FloatTensorType([None, width]))])
    except Exception as err:
        raise ConversionError(f"onnxmltools cannot convert this {type(model).__name__}: {_first_line(err)}") from None


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _sources(onnx_model, native, model, framework):
    """``{field: the converter's output that holds it}``."""
    produced = [o.name for o in onnx_model.graph.output]
    predict = next((n for n in ("label", "variable") if n in produced), produced[0])
    if framework == "xgboost" and native.methods and len(native.methods) == 1 and _is_booster(model):
        objective = json.loads(model.save_config())["learner"]["objective"]["name"]
        if objective in ("binary:logistic", "multi:softprob"):
            predict = "probabilities"
        elif not objective.startswith(("reg:", "multi:softmax")):
            raise ConversionError(f"a Booster with objective {objective} cannot be converted to ONNX "
                                  f"as Wallaroo serves it; upload it natively (framework xgboost)")
    return {field: ("probabilities" if method == _tabular.PROBA else predict)
            for field, method in native.methods.items()}


def _is_booster(model):
    import xgboost
    return isinstance(model, xgboost.Booster)


def _name_outputs(onnx_model, native, model, framework):
    """Append nodes that give each output field its name, shape and type."""
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx_model.graph
    sources = _sources(onnx_model, native, model, framework)
    # The converters' own names ("probabilities") may be the fields' names: move them aside.
    renamed = {o.name: f"orchzip_src_{o.name}" for o in graph.output}
    for node in graph.node:
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    sources = {field: renamed[src] for field, src in sources.items()}
    # One entry per domain (skl2onnx may list the default domain twice); the nodes added
    # below need the default domain, which onnxmltools leaves out.
    versions = {"": 15}
    for entry in onnx_model.opset_import:
        versions[entry.domain] = max(entry.version, versions.get(entry.domain, 0))
    del onnx_model.opset_import[:]
    onnx_model.opset_import.extend(helper.make_opsetid(domain, v) for domain, v in sorted(versions.items()))
    index = numpy_helper.from_array(np.array([1], dtype=np.int64), "orchzip_class1")
    flat = numpy_helper.from_array(np.array([-1], dtype=np.int64), "orchzip_flat")
    graph.initializer.extend([index, flat])
    outputs = []
    for field in native.output_schema:
        src = sources[field.name]
        scalar = not _tabular._is_list(field.type)
        value_type = field.type if scalar else field.type.value_type
        if _tabular._is_text(value_type):
            raise ConversionError(f"output {field.name!r} is text; orchzip's ONNX steps give numbers: "
                                  f"upload without --convert-to-onnx")
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(_tabular._numpy_type(value_type)))
        current = src
        if scalar:
            if field.name == _tabular.PROBABILITIES:
                graph.node.append(helper.make_node("Gather", [current, "orchzip_class1"],
                                                   [f"{field.name}__p1"], axis=1))
                current = f"{field.name}__p1"
            graph.node.append(helper.make_node("Reshape", [current, "orchzip_flat"], [f"{field.name}__flat"]))
            current = f"{field.name}__flat"
        graph.node.append(helper.make_node("Cast", [current], [field.name], to=elem))
        shape = [None] if scalar else [None, field.type.list_size if field.type.list_size > 0 else None]
        outputs.append(helper.make_tensor_value_info(field.name, elem, shape))
    del graph.output[:]
    graph.output.extend(outputs)
    onnx_model.ir_version = min(onnx_model.ir_version, MAX_IR)
    onnx.checker.check_model(onnx_model)
    return onnx_model


def _compare(path, native, input_name, width):
    """Largest difference per output between the native and the converted model, relative to
    the native value where it exceeds 1 (house prices differ by cents in float32)."""
    import onnxruntime as ort

    rows = np.random.default_rng(0).normal(size=(CHECK_ROWS, width)).astype(np.float32)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    if len(native.layout.columns) == 1:
        expected = native({native.layout.columns[0]: rows.astype(native.layout.dtype)})
    else:
        expected = native({c: rows[:, i].astype(native.layout.dtype) for i, c in enumerate(native.layout.columns)})
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {input_name: rows})))
    differences = {}
    for name, value in expected.items():
        want = np.asarray(value, dtype=np.float64)
        gap = np.abs(np.asarray(got[name], dtype=np.float64).reshape(want.shape) - want)
        differences[name] = float(np.max(gap / np.maximum(np.abs(want), 1.0))) if want.size else 0.0
    return differences


if __name__ == "__main__":
    main(sys.argv)
