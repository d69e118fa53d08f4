"""What a connection's name, type and details must look like: checked once, when it is created.

``orchzip connections create`` and the local API's ``/v1/api/connections/create`` both call
:func:`validate` (through :meth:`Store.create_connection`), so a connection that a later run,
``connections list`` or ``/connections/list`` would trip over is never stored. Rows stored
before these checks existed are read through :func:`decode_details`, which never raises.

Every check names the field and what it must be, never the value given: details hold
credentials, and an error message is shown, logged and answered over HTTP.

Types: DUCKDB, FILE, BIGQUERY and HTTP are what orchzip's connectors read and write, and
their details are checked field by field. Wallaroo itself takes any type name; other
well-formed names are stored as given (an orchestration that reads ``details()`` itself can
use them locally), and :func:`note_for` says that only Wallaroo can serve them.
"""

import difflib
import json
import math
import re

from orchzip.errors import ConfigError

__all__ = ["LOCAL_TYPES", "MAX_DEPTH", "MAX_DETAILS_BYTES", "InvalidConnection", "decode_details", "load_json",
           "note_for", "validate"]

MAX_DEPTH = 32  # a service-account key is 2 deep; 32 leaves room and keeps every reader's recursion safe
MAX_DETAILS_BYTES = 1 << 20
MAX_NAME_LENGTH = 200
_TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
FILE_FORMATS = ("arrow", "csv", "json", "jsonl", "parquet")
READ_APIS = ("auto", "storage", "rest")


class InvalidConnection(ConfigError):
    """A connection's name, type or details do not fit what its type needs."""


# -- field kinds: (check, what the value must be) --------------------------------------------
def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


_TEXT = (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
_POSITIVE_INT = (lambda v: _is_int(v) and v >= 1, "a whole number >= 1")
_COUNT = (lambda v: _is_int(v) and v >= 0, "a whole number >= 0")
_SECONDS = (lambda v: _is_number(v) and v >= 0, "a number >= 0")
_SIZE = (lambda v: (isinstance(v, str) and v.strip() != "") or (_is_int(v) and v > 0),
         "a size such as \"64MB\" or a number of bytes")
_HEADERS = (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
            "a JSON object of header names to strings")


def _one_of(values):
    return (lambda v: isinstance(v, str) and v.lower() in values, "one of: " + ", ".join(values))


_HTTP_URL = (lambda v: isinstance(v, str) and v.strip().lower().startswith(("http://", "https://")),
             "an http:// or https:// URL")

# type -> (fields: {name: kind}, required: [alternatives], closed: unknown fields refused)
SCHEMAS = {
    "DUCKDB": ({"path": _TEXT, "table": _TEXT, "query": _TEXT, "threads": _POSITIVE_INT, "memory_limit": _SIZE,
                "ledger_retention_days": _SECONDS}, [("path",)], True),
    "FILE": ({"path": _TEXT, "format": _one_of(FILE_FORMATS), "ledger_retention_days": _SECONDS}, [("path",)], True),
    "HTTP": ({"host": _HTTP_URL, "url": _HTTP_URL, "headers": _HEADERS}, [("host", "url")], True),
    # A service-account key plus orchzip's own keys; the key's fields vary, so others pass.
    "BIGQUERY": ({"dataset": _TEXT, "table": _TEXT, "project": _TEXT, "project_id": _TEXT, "location": _TEXT,
                  "api_endpoint": _TEXT, "grpc_endpoint": _TEXT, "read_api": _one_of(READ_APIS),
                  "retries": _COUNT, "retry_seconds": _SECONDS, "private_key": _TEXT, "client_email": _TEXT,
                  "type": _TEXT}, [], False),
}
LOCAL_TYPES = tuple(sorted(SCHEMAS))


def note_for(connection_type):
    """A note for a type orchzip's connectors cannot read (only Wallaroo can serve it), or None."""
    kind = str(connection_type).strip().upper()
    if kind in SCHEMAS:
        return None
    return (f"type {kind} is kept as given: Wallaroo takes any type name, but orchzip's connectors read only "
            f"{', '.join(LOCAL_TYPES)}; an orchestration that reads this connection's details() itself runs "
            f"locally, one that opens it through orchzip_shim runs only on Wallaroo")


def validate(name, connection_type, details):
    """Check a connection before it is stored; returns the type as stored (upper case).

    :raises InvalidConnection: one line naming the field at fault and what it must be.
    """
    _check_name(name)
    kind = _check_type(name, connection_type)
    if not isinstance(details, dict):
        raise InvalidConnection(f"details of connection {name!r} must be a JSON object like "
                                f"{{\"path\": \"data.duckdb\"}}, not a JSON {_json_kind(details)}")
    _check_shape(name, details)
    if kind in SCHEMAS:
        _check_fields(name, kind, details)
    return kind


def _check_name(name):
    if not isinstance(name, str) or not name.strip():
        raise InvalidConnection("a connection needs a non-empty name")
    if len(name) > MAX_NAME_LENGTH or any(not c.isprintable() for c in name):
        raise InvalidConnection(f"a connection name must be printable text of at most {MAX_NAME_LENGTH} "
                                f"characters, without line breaks or control characters")


def _check_type(name, connection_type):
    text = connection_type.strip() if isinstance(connection_type, str) else ""
    if not _TYPE_NAME.match(text):
        raise InvalidConnection(f"connection {name!r}: the type must be a name of letters, digits, _ or - "
                                f"(at most 64), such as {', '.join(LOCAL_TYPES)}")
    kind = text.upper()
    if kind not in SCHEMAS:
        close = difflib.get_close_matches(kind, LOCAL_TYPES, n=1, cutoff=0.75)
        if close:
            raise InvalidConnection(f"connection {name!r}: type {kind} is not one orchzip knows; did you mean "
                                    f"{close[0]}? (orchzip reads {', '.join(LOCAL_TYPES)})")
    return kind


def _check_shape(name, details):
    """Finite numbers only, bounded depth and size: what every later reader can take."""
    stack = [(details, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidConnection(f"details of connection {name!r} nest deeper than {MAX_DEPTH} levels; "
                                    f"flatten them")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidConnection(f"details of connection {name!r} hold NaN or Infinity, which are not JSON "
                                    f"numbers; give a number or a string")
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise InvalidConnection(f"details of connection {name!r} must have string keys")
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif not (value is None or isinstance(value, (str, int, float, bool))):
            raise InvalidConnection(f"details of connection {name!r} hold a {type(value).__name__}; "
                                    f"only JSON values are allowed")
    if len(json.dumps(details)) > MAX_DETAILS_BYTES:
        raise InvalidConnection(f"details of connection {name!r} are over {MAX_DETAILS_BYTES:,} bytes; "
                                f"keep data out of them and point at it instead")


def _check_fields(name, kind, details):
    fields, required, closed = SCHEMAS[kind]
    for alternatives in required:
        if not any(details.get(f) not in (None, "") for f in alternatives):
            wanted = " or ".join(repr(f) for f in alternatives)
            raise InvalidConnection(f"{kind} connection {name!r} needs {wanted} in its details, "
                                    f"e.g. {_EXAMPLES[kind]}")
    for field, value in details.items():
        if field not in fields:
            if closed:
                raise InvalidConnection(f"{kind} connection {name!r}: unknown field {field!r} in its details "
                                        f"(known: {', '.join(sorted(fields))})")
            continue
        check, what = fields[field]
        if value is None or (isinstance(value, str) and _ENV_REFERENCE.search(value)):
            continue  # null means unset; ${VAR} is read only when a task runs
        if not check(value):
            given = "" if isinstance(value, str) else f", not a JSON {_json_kind(value)}"
            raise InvalidConnection(f"{kind} connection {name!r}: field {field!r} must be {what}{given}")
    if kind == "FILE":
        _check_file_format(name, details)


def _check_file_format(name, details):
    path = details["path"]
    if details.get("format") or _ENV_REFERENCE.search(path):
        return
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if suffix not in {"parquet", "pq", "arrow", "feather", "ipc", "csv", "json", "jsonl", "ndjson"}:
        raise InvalidConnection(f"FILE connection {name!r}: the path's suffix does not tell its format; add "
                                f"\"format\": one of {', '.join(FILE_FORMATS)}")


_EXAMPLES = {
    "DUCKDB": '{"path": "houses.duckdb", "table": "inputs"}',
    "FILE": '{"path": "results.parquet"}',
    "HTTP": '{"host": "https://example.com/inputs.arrow"}',
    "BIGQUERY": '{"dataset": "d", "table": "t", ...service-account key}',
}


def _json_kind(value):
    if isinstance(value, bool):
        return "boolean"
    if _is_int(value) or isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def load_json(text):
    """``json.loads`` that refuses NaN and Infinity (Python's json takes them; JSON does not)."""
    def refuse(constant):
        raise ValueError(f"{constant} is not a JSON number")
    return json.loads(text, parse_constant=refuse)


def decode_details(text):
    """``(details, problem)`` of details as stored: a dict and None, or ``{}`` and why not.

    Never raises: a row stored before validation existed must not break ``list`` or ``get``.
    """
    try:
        details = load_json(text)
    except json.JSONDecodeError:
        return {}, "stored details are not valid JSON"
    except (ValueError, TypeError):
        return {}, "stored details hold NaN or Infinity"
    except RecursionError:
        return {}, "stored details nest too deeply to read"
    if not isinstance(details, dict):
        return {}, "stored details are not a JSON object"
    try:
        _check_shape("", details)
    except InvalidConnection:
        return {}, f"stored details nest deeper than {MAX_DEPTH} levels or are too big"
    return details, None
