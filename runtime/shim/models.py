"""Models: map a batch of input rows to a batch shaped as Wallaroo's inference results.

A result batch has the columns Wallaroo returns: ``time`` (one timestamp per batch),
``in.<column>`` for every input column, ``out.<output>`` (a list per row; for a model
converted to ONNX at upload, as its output schema says) and the count of
failed validation checks (0 per row: local pipelines have no checks), named as the targeted
Wallaroo release names it: ``anomaly.count`` today, ``check_failures`` in 2023 releases. The
task context says which (``anomaly_column``, written by the runner from the target version).
"""

import datetime
import os

import numpy as np
import pyarrow as pa

from .errors import BadInput, MissingDependency, ModelError

__all__ = ["OnnxModel", "SdkPipelineModel", "local_model", "onnx_step", "wallaroo_result"]

DEFAULT_TENSOR_COLUMN = "tensor"
DEFAULT_ANOMALY_COLUMN = "anomaly.count"  # current Wallaroo releases


def local_model(name, entry, anomaly_column=None):
    """The model of a one-file ONNX pipeline from its entry in the task context.

    Pipelines of registered steps go through ``pipelines.local_pipeline``.
    """
    return OnnxModel(entry["model"], name=name, tensor_column=entry.get("tensor_column"),
                     anomaly_column=anomaly_column)


def onnx_step(spec, name=None, anomaly_column=None):
    """The :class:`OnnxModel` of an ONNX step's model spec (see runtime/registry.py ``model_spec``).

    A model converted to ONNX at upload (``converted_from``) answers as its output schema says,
    as the native model does; any other ONNX model gives a list per row, as on Wallaroo.
    """
    return OnnxModel(spec.get("path") or spec.get("model"), name=name or spec.get("name"),
                     tensor_column=spec.get("tensor_column"), anomaly_column=anomaly_column,
                     output_schema=spec.get("output_schema") if spec.get("converted_from") else None)


def _now_ms():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def wallaroo_result(batch, outputs, anomaly_column=DEFAULT_ANOMALY_COLUMN):
    """Assemble a Wallaroo-shaped result from the input batch and ``{name: array}`` outputs.

    :param anomaly_column: the name of the per-row count of failed checks in the targeted release.
    """
    n = batch.num_rows
    now = np.full(n, np.datetime64(_now_ms(), "ms")).view(np.int64)
    columns = {"time": _from_numpy(now, pa.timestamp("ms"))}
    for name, column in zip(batch.schema.names, batch.columns):
        columns[f"in.{name}"] = column
    for name, array in outputs.items():
        columns[f"out.{name}"] = array
    columns[anomaly_column] = _from_numpy(np.zeros(n, dtype=np.int64), pa.int64())
    return pa.RecordBatch.from_pydict(columns)


def _from_numpy(values, typ=None):
    """A 1-d numpy array of fixed-width numbers as an Arrow array over the same memory.

    ``pa.array(ndarray)`` would do the same but, in the pyarrow releases Wallaroo pins, imports
    pandas on its first call (0.25 s of every run).
    """
    values = np.ascontiguousarray(values)
    if typ is None:
        if values.dtype.kind not in "iuf" or not values.dtype.isnative:  # bools are bits in Arrow
            return pa.array(values)
        typ = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(typ, len(values), [None, pa.py_buffer(values)])


def _to_numpy(array):
    """A null-free Arrow array as numpy: a view of its buffer when it holds fixed-width numbers.

    Not ``array.to_numpy()``, which imports pandas in the pyarrow releases Wallaroo pins.
    """
    typ = array.type
    if (pa.types.is_integer(typ) or pa.types.is_floating(typ)) and not array.null_count:
        kind = "float" if pa.types.is_floating(typ) else "int" if pa.types.is_signed_integer(typ) else "uint"
        dtype = np.dtype(f"{kind}{typ.bit_width}")
        return np.frombuffer(array.buffers()[1], dtype=dtype)[array.offset:array.offset + len(array)]
    return array.to_numpy(zero_copy_only=False)


def _list_per_row(values):
    """A [N, k] (or [N]) numpy array as an Arrow list<...> column, one list of k per row."""
    values = np.asarray(values)
    n = values.shape[0]
    flat = np.ascontiguousarray(values.reshape(n, -1))
    width = flat.shape[1]
    offsets = _from_numpy(np.arange(0, n * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, _from_numpy(flat.reshape(-1)))


def _decode_schema(schema):
    """A ``pyarrow.Schema`` from itself or the spec's base64 text (None stays None)."""
    if schema is None or isinstance(schema, pa.Schema):
        return schema
    import base64
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(schema)))


def _is_list(typ):
    return pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)


def _as_field(field, values, model_name):
    """An output of shape [N] or [N, k] as the column the output schema's ``field`` declares:
    one value per row for a scalar type, a list of the field's list type otherwise."""
    values = np.asarray(values)
    n = values.shape[0]
    flat = np.ascontiguousarray(values.reshape(n, -1))
    width = flat.shape[1]
    typ = field.type
    if not _is_list(typ):
        if width != 1:
            raise ModelError(f"model {model_name!r} gives {width} values per row in output {field.name!r}; "
                             f"its output schema says one ({typ})")
        return _cast(_from_numpy(flat.reshape(n)), typ, field.name, model_name)
    inner = _cast(_from_numpy(flat.reshape(-1)), typ.value_type, field.name, model_name)
    if pa.types.is_fixed_size_list(typ):
        if width != typ.list_size:
            raise ModelError(f"model {model_name!r} gives {width} values per row in output {field.name!r}; "
                             f"its output schema says {typ.list_size}")
        return pa.FixedSizeListArray.from_arrays(inner, typ.list_size)
    large = pa.types.is_large_list(typ)
    offsets = _from_numpy(np.arange(0, n * width + 1, width, dtype=np.int64 if large else np.int32))
    return (pa.LargeListArray if large else pa.ListArray).from_arrays(offsets, inner)


def _cast(array, typ, field_name, model_name):
    if array.type == typ:  # the converted model casts to the schema's types itself: the usual case
        return array
    try:
        return array.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ModelError(f"model {model_name!r} output {field_name!r} of type {array.type} does not fit its "
                         f"output schema's {typ}: {err}") from None


class OnnxModel:
    """An ONNX model run by onnxruntime on the CPU.

    :param path: the .onnx file.
    :param tensor_column: the input column holding each row's features as a list; by
        default ``tensor``, else the column named like the model's input, else, when every
        column is numeric, all columns side by side (a CSV of feature columns).
    :param anomaly_column: the results' check-count column (see the module docstring).
    :param output_schema: when given (a ``pyarrow.Schema`` or its base64 text), the outputs are
        the schema's fields, each shaped and typed as the field says (a model converted to ONNX
        answers as the native one); by default every output is a list per row.
    """

    def __init__(self, path, name=None, tensor_column=None, anomaly_column=None, output_schema=None):
        self.path = os.fspath(path)
        self.anomaly_column = anomaly_column or DEFAULT_ANOMALY_COLUMN
        self.name = name or os.path.splitext(os.path.basename(self.path))[0]
        self.tensor_column = tensor_column
        if not os.path.isfile(self.path):
            raise ModelError(
                f"model file {self.path} of pipeline {self.name!r} does not exist; "
                f"recreate the pipeline with: orchzip pipelines create {self.name} --model FILE.onnx"
            )
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependency.from_args("running an ONNX model", ["onnxruntime"]) from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings from the model file are not the user's
        # Idle model threads sleep instead of spinning, leaving the cores to the reader and
        # writer threads that overlap with inference (see loop.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                self.path, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own untyped errors for bad files
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"cannot load model {self.path}: {first_line}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(
                f"model {self.path} has {len(inputs)} inputs; orchzip runs models with one "
                f"tensor input"
            )
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.width = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.output_fields = None
        if output_schema is not None:
            self.output_fields = list(_decode_schema(output_schema))
            missing = [f.name for f in self.output_fields if f.name not in self.output_names]
            if missing:
                raise ModelError(f"model {self.path} has no output {missing[0]!r} of its output schema "
                                 f"(outputs: {', '.join(self.output_names)}); upload it again")
            self.output_names = [f.name for f in self.output_fields]

    def __repr__(self):
        return f"OnnxModel({self.path!r}, input={self.input_name!r}, width={self.width})"

    def infer_batch(self, batch, row_offset=0):
        """Run the model on ``batch``; ``row_offset`` numbers rows in error messages."""
        return wallaroo_result(batch, self._outputs(batch, row_offset), self.anomaly_column)

    def process(self, batch, row_offset=0):
        """The model's outputs for ``batch`` as a batch of plain-named columns (a pipeline step)."""
        return pa.RecordBatch.from_pydict(self._outputs(batch, row_offset))

    def _outputs(self, batch, row_offset):
        features = self._features(batch, row_offset)
        try:
            results = self._session.run(self.output_names, {self.input_name: features})
        except Exception as err:
            raise ModelError(f"model {self.name!r} failed on rows {row_offset}..{row_offset + batch.num_rows - 1}: {err}") from None
        if self.output_fields is not None:
            return {f.name: _as_field(f, r, self.name) for f, r in zip(self.output_fields, results)}
        return {n: _list_per_row(r) for n, r in zip(self.output_names, results)}

    def close(self):
        self._session = None

    def _column_for_tensor(self, batch):
        names = batch.schema.names
        for candidate in (self.tensor_column, DEFAULT_TENSOR_COLUMN, self.input_name):
            if candidate and candidate in names:
                return batch.column(names.index(candidate)), candidate
        if self.tensor_column:
            raise BadInput(f"input rows have no column {self.tensor_column!r} (columns: {', '.join(names)})")
        return None, None

    def _features(self, batch, row_offset):
        column, column_name = self._column_for_tensor(batch)
        if column is None:
            return self._features_from_scalar_columns(batch)
        return tensor_to_numpy(column, column_name, self.width, row_offset, self.name)

    def _features_from_scalar_columns(self, batch):
        names = batch.schema.names
        if not all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in batch.schema.types):
            raise BadInput(
                f"input rows have no 'tensor' column and not only numeric columns "
                f"(columns: {', '.join(names)}); give the rows a list column named 'tensor'"
            )
        if self.width is not None and len(names) != self.width:
            raise BadInput(
                f"input rows have {len(names)} numeric columns; model {self.name!r} expects "
                f"{self.width} features per row"
            )
        return np.column_stack([c.to_numpy(zero_copy_only=False) for c in batch.columns]).astype(np.float32)


def tensor_to_numpy(column, column_name, width, row_offset, model_name):
    """A list column (list, large_list or fixed_size_list of numbers) as float32 [N, width].

    The values are taken from Arrow's flat buffer without a Python object per value, and the
    row lengths from its offsets with numpy: ``pyarrow.compute`` would import pandas (0.25 s
    of every run) on its first call.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    typ = column.type
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)):
        raise BadInput(
            f"column {column_name!r} has type {typ}; the model needs a list of numbers per row"
        )
    n = len(column)
    if column.null_count:
        first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise BadInput(f"row {row_offset + first} has no value in column {column_name!r}")
    if pa.types.is_fixed_size_list(typ):
        lengths = np.full(n, typ.list_size)
    else:
        lengths = np.diff(_to_numpy(column.offsets))
    expected = width if width is not None else (int(lengths[0]) if n else 0)
    bad = np.flatnonzero(lengths != expected)
    if bad.size:
        row = int(bad[0])
        raise BadInput(
            f"row {row_offset + row} of column {column_name!r} has {int(lengths[row])} values; "
            f"model {model_name!r} expects {expected}"
        )
    values = column.flatten()
    if values.null_count:
        raise BadInput(f"column {column_name!r} holds null values inside its lists")
    flat = _to_numpy(values)
    return flat.astype(np.float32, copy=False).reshape(n, expected)


class SdkPipelineModel:
    """A pipeline on a Wallaroo instance, inferred through the wallaroo SDK.

    Its results keep the shape the instance's release gives them (``anomaly.count`` or
    ``check_failures``), as the same orchestration run locally gets for that release.
    """

    def __init__(self, name, pipeline):
        self.name = name
        self._pipeline = pipeline

    def infer_batch(self, batch, row_offset=0):
        result = self._pipeline.infer(pa.Table.from_batches([batch]))
        if not isinstance(result, pa.Table):
            result = pa.Table.from_pandas(result, preserve_index=False)
        return result.combine_chunks().to_batches()[0] if result.num_rows else pa.RecordBatch.from_pylist([], schema=result.schema)

    def close(self):
        pass
