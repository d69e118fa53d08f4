"""Arrow columns to the NumPy arrays a Python or BYOP model sees, and its answer back to Arrow.

What the model sees follows Wallaroo's Python runtime:

- a scalar column (numbers, booleans, strings, timestamps) is a 1-D array of N values;
- a list column (``list``, ``large_list``, ``fixed_size_list``, nested or not) whose rows all
  have the same shape is one array of shape ``[N, k, ...]`` (``fixed_size_list<float>[18]``
  gives ``[N, 18]``); rows of different lengths (or null rows) give a 1-D ``object`` array
  holding one array per row (``None`` for a null row);
- a ``fixed_shape_tensor`` column is an array of shape ``[N, *shape]``.

Back the other way each returned array must have N rows and is converted to the type the
output schema gives its field: a 2-D (or deeper) array or an array of per-row sequences
becomes a list column, a 1-D array a scalar column, values cast safely to the field's type.
Anything else raises :class:`OutputMismatch` whose text is one line naming the field.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["OutputMismatch", "batch_to_arrays", "column_to_numpy", "arrays_to_batch"]

_LIST_TYPES = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)


class OutputMismatch(ValueError):
    """The model's answer does not fit the output schema; ``str()`` is one line."""


def _is_list(typ):
    return any(check(typ) for check in _LIST_TYPES)


def _is_tensor(typ):
    return isinstance(typ, pa.BaseExtensionType) and getattr(typ, "extension_name", "") == "arrow.fixed_shape_tensor"


def batch_to_arrays(batch):
    """``{column: np.ndarray}`` for every column of ``batch``, in its order."""
    return {name: column_to_numpy(column) for name, column in zip(batch.schema.names, batch.columns)}


def column_to_numpy(column):
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if _is_tensor(column.type):
        return column.to_numpy_ndarray()
    if _is_list(column.type):
        return _list_to_numpy(column)
    return column.to_numpy(zero_copy_only=False)


def _list_to_numpy(column):
    """``[N, k, ...]`` when every row has the same shape, else an object array of rows."""
    n = len(column)
    shape, values = [n], column
    while _is_list(values.type):
        if values.null_count or len(values) == 0:
            return _ragged(column)
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        if lengths.size and (lengths != lengths[0]).any():
            return _ragged(column)
        width = int(lengths[0]) if lengths.size else 0
        shape.append(width)
        values = values.flatten()
    if _is_list(values.type) or values.null_count:
        return _ragged(column)
    flat = values.to_numpy(zero_copy_only=False)
    return flat.reshape(shape)


def _ragged(column):
    out = np.empty(len(column), dtype=object)
    for i in range(len(column)):
        scalar = column[i]
        if not scalar.is_valid:
            out[i] = None
            continue
        out[i] = _list_to_numpy(pa.array([scalar.as_py()], type=column.type))[0]
    return out


# -- back to Arrow --------------------------------------------------------------------------

def arrays_to_batch(outputs, schema, num_rows):
    """A record batch of ``schema`` from the model's ``{name: array-like}``, ``num_rows`` long.

    :raises OutputMismatch: a field is missing or extra, has the wrong number of rows, or its
        values do not fit the field's type.
    """
    if not isinstance(outputs, dict):
        raise OutputMismatch(f"the model returned {type(outputs).__name__}, not a dict of arrays "
                             f"(one per output field: {', '.join(schema.names)})")
    names = list(outputs)
    missing = [n for n in schema.names if n not in outputs]
    extra = [n for n in names if n not in schema.names]
    if missing or extra:
        parts = []
        if missing:
            parts.append("no " + ", ".join(repr(n) for n in missing))
        if extra:
            parts.append(", ".join(repr(n) for n in extra) + " not in the output schema")
        raise OutputMismatch(f"the model returned {'; '.join(parts)} (output schema: "
                             f"{', '.join(f'{f.name}: {f.type}' for f in schema)})")
    columns = [_to_arrow(field, outputs[field.name], num_rows) for field in schema]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _to_arrow(field, value, num_rows):
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        array = value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
        _check_rows(field, len(array), num_rows)
        return _cast(field, array)
    data = value if isinstance(value, np.ndarray) else _as_array(field, value)
    if data.ndim == 0:
        raise OutputMismatch(f"output {field.name!r} is a single value, not one per row ({num_rows} rows)")
    _check_rows(field, data.shape[0], num_rows)
    typ = field.type
    if _is_tensor(typ):
        return _cast(field, pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(data)))
    if _is_list(typ):
        return _cast(field, _nested(field, data))
    if data.ndim > 1:
        raise OutputMismatch(f"output {field.name!r} has shape {data.shape}; the output schema gives it "
                             f"type {typ}, one value per row (a list type takes [N, k])")
    try:
        array = pa.array(data)  # NaN stays NaN, as Wallaroo's runtime converts it
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as err:
        raise OutputMismatch(f"output {field.name!r} cannot be converted to {typ}: {_first_line(err)}") from None
    return _cast(field, array)


def _as_array(field, value):
    try:
        data = np.asarray(value)
    except ValueError:  # ragged nested sequences
        data = None
    if data is None or (data.dtype == object and data.ndim > 1):
        data = np.empty(len(value), dtype=object)
        data[:] = list(value)
    return data


def _check_rows(field, rows, num_rows):
    if rows != num_rows:
        raise OutputMismatch(f"output {field.name!r} has {rows} rows; the input had {num_rows} "
                             f"(a step answers one row per input row)")


def _nested(field, data):
    """A list column from an ``[N, k, ...]`` array (vectorised) or an object array of rows."""
    if data.dtype != object and data.ndim >= 2:
        try:
            return _from_dense(field.type, np.ascontiguousarray(data))
        except OutputMismatch as err:
            raise OutputMismatch(f"output {field.name!r}: {err}") from None
    rows = [None if row is None else np.asarray(row).tolist() for row in data]
    try:
        return pa.array(rows, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as err:
        raise OutputMismatch(f"output {field.name!r} cannot be converted to {field.type}: {_first_line(err)}") from None


def _from_dense(typ, data):
    """Build nested list arrays level by level from the array's shape, without a Python object per value."""
    if not _is_list(typ):
        try:
            values = pa.array(data.reshape(-1))
            return values if values.type == typ else values.cast(typ, safe=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
            raise OutputMismatch(f"values cannot be converted to {typ}: {_first_line(err)}") from None
    if data.ndim < 2:
        raise OutputMismatch(f"an array of shape {data.shape} has fewer levels than type {typ}")
    n, width = data.shape[0], data.shape[1]
    inner = _from_dense(typ.value_type, data.reshape((n * width,) + data.shape[2:]))
    if pa.types.is_fixed_size_list(typ):
        if width != typ.list_size:
            raise OutputMismatch(f"rows hold {width} values; type {typ} holds {typ.list_size}")
        return pa.FixedSizeListArray.from_arrays(inner, typ.list_size)
    offsets = np.arange(0, n * width + 1, width, dtype=np.int64 if pa.types.is_large_list(typ) else np.int32)
    cls = pa.LargeListArray if pa.types.is_large_list(typ) else pa.ListArray
    return cls.from_arrays(pa.array(offsets), inner)


def _cast(field, array):
    if array.type == field.type:
        return array
    try:
        return array.cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        raise OutputMismatch(f"output {field.name!r} of type {array.type} does not fit the output schema's "
                             f"{field.type}: {_first_line(err)}") from None


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
