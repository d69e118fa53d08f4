"""How Wallaroo feeds a scikit-learn or XGBoost model, and names what it gives back.

Shared by the sklearn and xgboost loaders (inside the model's environment: numpy and pyarrow
only) and by the ONNX conversion (inside the conversion tool's environment), so that a model
run natively and the same model converted to ONNX see the same rows and name the same outputs.

What Wallaroo does, as its SKLearn and XGBoost upload guides and tutorials show:

* **Input.** The input schema is required. Its columns are fed to the model as one 2-D array,
  columns in the schema's order: either one column holding a list of numbers per row
  (``inputs: fixed_size_list<float64>[4]``, the tutorials' form), or several scalar columns of
  one and the same numeric type ("all of the data types being the same").
* **Output.** The output schema is required and names the outputs: ``predictions`` is what
  ``predict`` gives, ``probabilities`` what ``predict_proba`` gives (a list of one probability
  per class; a scalar for a binary XGBoost Booster, whose ``predict`` gives P(class 1)). A
  single field with another name takes ``predict``. The result then appears as
  ``out.predictions`` / ``out.probabilities``.
"""

import base64

import numpy as np
import pyarrow as pa

from . import ModelLoadError

__all__ = [
    "SchemaMismatch",
    "read_schema",
    "InputLayout",
    "output_methods",
    "shape_outputs",
    "PREDICT",
    "PROBA",
]

PREDICT, PROBA = "predict", "predict_proba"
PROBABILITIES = "probabilities"


class SchemaMismatch(ModelLoadError, ValueError):
    """The model, its schemas and the rows do not fit together; ``str(err)`` is one line."""


def read_schema(text):
    """A pyarrow schema from the spec's text: base64 of ``schema.serialize()``."""
    if isinstance(text, pa.Schema):
        return text
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _is_list(typ):
    return pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)


def _is_number(typ):
    return pa.types.is_integer(typ) or pa.types.is_floating(typ)


class InputLayout:
    """Which input columns make the model's 2-D input, and how wide it is.

    :param schema: the model's input schema (pyarrow).
    :raises SchemaMismatch: a schema Wallaroo would not feed to the model.
    """

    def __init__(self, schema):
        fields = list(schema)
        if not fields:
            raise SchemaMismatch("the input schema has no fields; give one list column, e.g. "
                                 "pa.schema([pa.field('inputs', pa.list_(pa.float64(), list_size=4))])")
        lists = [f for f in fields if _is_list(f.type)]
        if lists:
            if len(fields) != 1:
                raise SchemaMismatch(
                    f"the input schema has {len(fields)} fields with a list among them "
                    f"({', '.join(f.name for f in fields)}); give the model one list column holding "
                    f"all its features, in the order it was trained on")
            field = fields[0]
            if not _is_number(field.type.value_type):
                raise SchemaMismatch(f"input field {field.name!r} is a list of {field.type.value_type}; "
                                     f"the model needs numbers")
            self.columns = [field.name]
            self.width = field.type.list_size if pa.types.is_fixed_size_list(field.type) else None
            self.dtype = _numpy_type(field.type.value_type)
            return
        bad = [f for f in fields if not _is_number(f.type)]
        if bad:
            raise SchemaMismatch(f"input field {bad[0].name!r} has type {bad[0].type}; the model needs "
                                 f"numbers (one list column, or scalar numeric columns)")
        types = {str(f.type) for f in fields}
        if len(types) > 1:
            raise SchemaMismatch(
                f"the input fields have different types ({', '.join(sorted(types))}); Wallaroo feeds "
                f"them to the model as one array, so give them all the same type (e.g. pa.float64())")
        self.columns = [f.name for f in fields]
        self.width = len(fields)
        self.dtype = _numpy_type(fields[0].type)

    def describe(self):
        if len(self.columns) == 1 and self.width != 1:
            return f"input column {self.columns[0]!r}"
        return f"{len(self.columns)} input columns"

    def check_width(self, expected, model_name):
        """Fail when the schema gives a fixed number of features the model does not take."""
        if expected is not None and self.width is not None and int(expected) != self.width:
            raise SchemaMismatch(
                f"the input schema gives {self.width} features per row ({self.describe()}); "
                f"the {model_name} was trained on {int(expected)}: fix the input schema")

    def features(self, inputs):
        """The model's 2-D input from the worker's ``{column: numpy array}``."""
        missing = [c for c in self.columns if c not in inputs]
        if missing:
            raise SchemaMismatch(f"the rows have no column {missing[0]!r} "
                                 f"(columns: {', '.join(inputs) or 'none'})")
        if len(self.columns) == 1:
            matrix = _as_matrix(inputs[self.columns[0]], self.columns[0])
        else:
            matrix = np.column_stack([np.asarray(inputs[c]).reshape(-1) for c in self.columns])
        if self.width is not None and matrix.shape[1] != self.width:
            raise SchemaMismatch(f"the rows have {matrix.shape[1]} values in {self.describe()}; "
                                 f"the input schema says {self.width}")
        return matrix


def _as_matrix(values, name):
    """One column's values as [N, k]: a 2-D array, rows of lists, or scalars (k = 1)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_numpy(zero_copy_only=False)
    values = np.asarray(values)
    if values.dtype == object:
        rows = [np.asarray(v) for v in values]
        lengths = {r.size for r in rows}
        if len(lengths) > 1:
            raise SchemaMismatch(f"the rows of column {name!r} hold lists of different lengths "
                                 f"({', '.join(str(n) for n in sorted(lengths))}); every row needs "
                                 f"the same number of features")
        return np.stack(rows) if rows else np.empty((0, 0))
    if values.ndim == 1:
        return values.reshape(-1, 1)
    return values.reshape(values.shape[0], -1)


def output_methods(schema, has_proba, model_name, single_output=False):
    """``{field name: PREDICT or PROBA}``: which of the model's methods fills each output field.

    :param has_proba: the model has ``predict_proba`` (a classifier).
    :param single_output: the model has one output only (an XGBoost Booster's ``predict``).
    :raises SchemaMismatch: an output the model cannot give.
    """
    fields = list(schema)
    if not fields:
        raise SchemaMismatch("the output schema has no fields; name the model's output, e.g. "
                             "pa.schema([pa.field('predictions', pa.float64())])")
    if single_output:
        if len(fields) != 1:
            raise SchemaMismatch(
                f"the output schema has {len(fields)} fields ({', '.join(f.name for f in fields)}); "
                f"a {model_name} gives one output (its predict): keep one field")
        return {fields[0].name: PREDICT}
    if len(fields) == 1:
        name = fields[0].name
        if name == PROBABILITIES and not has_proba:
            raise SchemaMismatch(f"output {PROBABILITIES!r} needs a classifier's predict_proba; the "
                                 f"{model_name} has none: name the output 'predictions'")
        return {name: PROBA if name == PROBABILITIES else PREDICT}
    names = [f.name for f in fields]
    if len(fields) > 2 or set(names) != {"predictions", PROBABILITIES}:
        raise SchemaMismatch(
            f"the output schema has fields {', '.join(names)}; a {model_name} gives 'predictions' "
            f"(predict) and, for a classifier, 'probabilities' (predict_proba): name them so")
    if not has_proba:
        raise SchemaMismatch(f"output {PROBABILITIES!r} needs a classifier's predict_proba; the "
                             f"{model_name} has none: keep only 'predictions'")
    return {name: PROBA if name == PROBABILITIES else PREDICT for name in names}


def shape_outputs(values, schema, model_name):
    """Each output shaped and typed as its field says: [N] for a scalar, [N, k] for a list.

    :param values: ``{field name: what the model's method returned}``.
    :raises SchemaMismatch: an output of another width than its field.
    """
    shaped = {}
    for field in schema:
        array = np.asarray(values[field.name])
        n = array.shape[0] if array.ndim else 1
        per_row = array.reshape(n, -1)
        if _is_list(field.type):
            want = field.type.list_size if pa.types.is_fixed_size_list(field.type) else None
            if want is not None and per_row.shape[1] != want:
                raise SchemaMismatch(
                    f"the {model_name} gives {per_row.shape[1]} values per row for output {field.name!r}; "
                    f"the output schema says {want}: fix the output schema")
            shaped[field.name] = _cast(per_row, field.type.value_type, field.name)
        else:
            if per_row.shape[1] == 2 and field.name == PROBABILITIES:
                # A binary classifier's scalar "probabilities" is P(class 1), as a Booster gives it.
                per_row = per_row[:, 1:]
            if per_row.shape[1] != 1:
                raise SchemaMismatch(
                    f"the {model_name} gives {per_row.shape[1]} values per row for output {field.name!r}; "
                    f"the output schema says one ({field.type}): make it a list, "
                    f"e.g. pa.list_(pa.float64(), list_size={per_row.shape[1]})")
            shaped[field.name] = _cast(per_row[:, 0], field.type, field.name)
    return shaped


def _numpy_type(typ):
    """The numpy dtype of a numeric Arrow type (without pandas, which model envs may lack)."""
    if not (_is_number(typ) or pa.types.is_boolean(typ)):
        raise SchemaMismatch(f"type {typ} is not a number a model takes or gives")
    return pa.array([], typ).to_numpy(zero_copy_only=False).dtype


def _is_text(typ):
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def output_type_ok(typ):
    """An output field's (value) type a model can fill: a number, a boolean, or text (class labels)."""
    if _is_text(typ):
        return True
    _numpy_type(typ)
    return True


def _cast(values, typ, name):
    if _is_text(typ):  # a classifier trained on string labels predicts them
        return values.astype(str).astype(object)
    try:
        return values.astype(_numpy_type(typ), copy=False)
    except (TypeError, ValueError):
        example = values.reshape(-1)[0] if values.size else None
        raise SchemaMismatch(f"output {name!r} holds values like {example!r}; the output schema says "
                             f"{typ}: fix the output schema") from None
