"""A model's input and output schemas: Arrow schemas, written by people as small JSON objects.

Wallaroo takes a model's schemas as ``pyarrow.Schema`` objects at upload. On the command line
(``orchzip models upload --input-schema``) and in orchzip.yaml a schema is a JSON object of
column name to Arrow type, written as pyarrow prints types::

    {"tensor": "list<float64>", "count": "int64", "label": "string"}

Types: every name ``pyarrow.type_for_alias`` knows (``float32``, ``double``, ``int64``,
``bool``, ``string``, ``timestamp[ms]``, ``date32`` ...), and lists of them:
``list<T>``, ``large_list<T>``, ``fixed_size_list<T>[N]`` (``list<item: T>`` as pyarrow
prints it is read too). The option also takes the path of a file holding that JSON. Stored
and passed to tasks as the base64 of ``schema.serialize()`` (the model spec's form).
"""

import base64
import json
import os
import re

import pyarrow as pa

from orchzip.errors import ConfigError

__all__ = ["parse_schema", "encode_schema", "decode_schema", "schema_to_json", "coerce_schema"]

_LIST = re.compile(r"^(list|large_list|fixed_size_list)<(?:item:\s*)?(.+)>(?:\[(\d+)\])?$")
EXAMPLE = '{"tensor": "list<float64>"}'


def parse_type(text, where):
    """The Arrow type written as ``text`` (see the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: a type must be a string such as \"float64\" or \"list<float32>\"")
    text = text.strip()
    match = _LIST.match(text)
    if match:
        kind, inner, size = match.groups()
        item = parse_type(inner, where)
        if kind == "fixed_size_list":
            if size is None:
                raise ConfigError(f"{where}: {text!r} needs its length, e.g. \"fixed_size_list<float32>[18]\"")
            return pa.list_(item, int(size))
        if size is not None:
            raise ConfigError(f"{where}: {text!r}: only fixed_size_list takes a length")
        return pa.large_list(item) if kind == "large_list" else pa.list_(item)
    try:
        return pa.type_for_alias(text)
    except (ValueError, KeyError):
        raise ConfigError(
            f"{where}: unknown Arrow type {text!r}; use names such as float32, float64, int64, bool, "
            f"string, timestamp[ms], list<float64>, fixed_size_list<float32>[18]"
        ) from None


def parse_schema(value, what):
    """A ``pyarrow.Schema`` from a JSON object (text or dict) or a file holding one.

    :param what: how the user named it, for errors (e.g. ``--input-schema``).
    """
    if isinstance(value, pa.Schema):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            path = os.path.expanduser(text)
            try:
                with open(path, encoding="utf-8-sig") as fh:
                    text = fh.read(1 << 20)
            except OSError as err:
                raise ConfigError(f"{what} {value!r} is neither a JSON object such as {EXAMPLE} nor a readable "
                                  f"file ({err.strerror or err})") from None
            what = f"{what} file {value}"
        try:
            value = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"{what} is not valid JSON ({err}); write it as {EXAMPLE}") from None
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{what} must be a non-empty object of column name to Arrow type, e.g. {EXAMPLE}")
    return pa.schema([pa.field(str(name), parse_type(typ, f"{what} column {name!r}")) for name, typ in value.items()])


def coerce_schema(value, what):
    """``value`` (a Schema, JSON text, a dict, a file, or the stored base64) as a Schema, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, pa.Schema):
        return value
    if isinstance(value, str) and not value.strip().startswith("{") and not os.path.exists(value):
        try:
            return decode_schema(value)
        except (ValueError, pa.ArrowInvalid):
            pass
    return parse_schema(value, what)


def encode_schema(schema):
    """The model spec's form of a schema: base64 of its Arrow IPC serialization."""
    return None if schema is None else base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def decode_schema(text):
    return None if not text else pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text, validate=True)))


def schema_to_json(schema):
    """``{column: type}`` as people write it (the inverse of :func:`parse_schema`)."""
    if schema is None:
        return None
    return {field.name: _type_text(field.type) for field in schema}


def _type_text(typ):
    if pa.types.is_fixed_size_list(typ):
        return f"fixed_size_list<{_type_text(typ.value_type)}>[{typ.list_size}]"
    if pa.types.is_large_list(typ):
        return f"large_list<{_type_text(typ.value_type)}>"
    if pa.types.is_list(typ):
        return f"list<{_type_text(typ.value_type)}>"
    return str(typ)
