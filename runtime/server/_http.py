"""HTTP plumbing of the local API server: JSON bodies in, JSON errors out.

Errors have the shape Wallaroo's MLOps API answers with (``{"msg", "code"}``) plus the
``status`` and ``error`` keys of its inference engine, so that either parser in the
wallaroo SDK finds the message. Nothing here ever puts a traceback in a response.
"""

import json
import logging
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from orchzip.errors import ConfigError, OrchzipError, UnknownConnection, UnknownPipeline
from orchzip.runtime.connection_schemas import load_json
from orchzip.runtime.store import AlreadyExists, NotFound

log = logging.getLogger("orchzip.server")

JSON_BODY_LIMIT = 10 * 1024 * 1024
_STATUS_TEXT = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
                409: "Conflict", 411: "Length Required", 413: "Payload Too Large",
                415: "Unsupported Media Type", 422: "Unprocessable Entity", 500: "Internal Server Error"}


class ApiError(Exception):
    """A request the server refuses: ``status`` (4xx) and a one-line message for the caller."""

    def __init__(self, status, msg):
        super().__init__(msg)
        self.status, self.msg = status, msg


def error_response(status, msg, source=None, headers=None):
    body = {"status": "error", "code": status, "msg": msg, "error": msg}
    if source:
        body["source"] = source
    return JSONResponse(body, status_code=status, headers=headers)


def status_for(err):
    """The HTTP status of one of orchzip's own errors."""
    if isinstance(err, (NotFound, UnknownConnection, UnknownPipeline)):
        return 404
    if isinstance(err, AlreadyExists):
        return 409
    return 400


async def on_api_error(request, exc):
    return error_response(exc.status, exc.msg)


async def on_http_exception(request, exc):
    msg = exc.detail if isinstance(exc.detail, str) else _STATUS_TEXT.get(exc.status_code, "error")
    if exc.status_code == 404 and msg == "Not Found":
        msg = f"no endpoint {request.method} {request.url.path}; see the Wallaroo MLOps API paths under /v1/api/"
    elif exc.status_code == 405:
        msg = f"{request.method} is not allowed on {request.url.path}; the MLOps API takes POST with a JSON body"
    return error_response(exc.status_code, msg, headers=getattr(exc, "headers", None))


async def on_orchzip_error(request, exc):
    return error_response(status_for(exc), str(exc).splitlines()[0])


async def on_unexpected(request, exc):
    # A bug of ours: the caller gets one line, the server's log gets the traceback.
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error in orchzip serve ({type(exc).__name__}); see the server's log")


EXCEPTION_HANDLERS = {
    ApiError: on_api_error,
    HTTPException: on_http_exception,
    OrchzipError: on_orchzip_error,
    Exception: on_unexpected,
}


async def read_body(request, limit):
    """The request body, refused with 413 past ``limit`` bytes (counted, not trusted from headers)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise ApiError(413, f"request body of {int(declared):,} bytes is over the limit of {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request, limit=JSON_BODY_LIMIT):
    """The body as a JSON object ({} when empty); 400 when it is not JSON or not an object."""
    raw = await read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        # NaN and Infinity are not JSON: stored, they would break every later answer.
        value = load_json(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        where = f" ({err.msg} at character {err.pos})" if isinstance(err, json.JSONDecodeError) else (
            f" ({err})" if type(err) is ValueError else "")
        raise ApiError(400, f"request body is not valid JSON{where}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"request body must be a JSON object, not a JSON {type(value).__name__}")
    return value


_KINDS = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63, "a 64-bit integer"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "object": (lambda v: isinstance(v, dict), "a JSON object"),
    # Ids Wallaroo gives as strings; local integer ids are accepted either way.
    "id": (lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)), "a string id"),
}


def field(body, name, kind, required=True, default=None):
    """``body[name]`` if it has the ``kind`` asked for; 422 when missing or of another type."""
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(422, f"missing field {name!r} in the request body")
        return default
    check, what = _KINDS[kind]
    if not check(value):
        raise ApiError(422, f"field {name!r} must be {what}, not {json.dumps(value)[:40]}")
    if kind == "str" and required and not value.strip():
        raise ApiError(422, f"field {name!r} must not be empty")
    return value


def int_id(value, name):
    """A local integer id given as an int or a string of digits."""
    if isinstance(value, int) and -2**63 <= value < 2**63:
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 19:
        return int(value)
    raise ApiError(404, f"no {name} with id {value!r}")


def uuid_id(value, name):
    """A whole UUID (the store also takes id prefixes; the API takes whole ids only)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise ApiError(404, f"no {name} with id {value!r}") from None


def endpoint(handler, status=200):
    """An async endpoint: read the JSON body, run ``handler(ctx, body)`` in a thread, answer JSON.

    A handler returning None answers 204 No Content.
    """
    async def run(request):
        body = await read_json(request)
        result = await run_in_threadpool(handler, request.app.state.ctx, body)
        if result is None:
            return Response(status_code=204)
        return JSONResponse(result, status_code=status)
    run.__name__ = handler.__name__
    return run


__all__ = ["ApiError", "ConfigError", "EXCEPTION_HANDLERS", "endpoint", "error_response", "field", "int_id", "uuid_id",
           "read_body", "read_json", "status_for"]
