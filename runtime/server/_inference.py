"""Inference on local pipelines: ``POST /v1/api/pipelines/infer/{deployment}[/{pipeline}]``.

As Wallaroo's inference URL takes them: ``application/json; format=pandas-records`` (a JSON
list of records, e.g. each with a ``tensor`` list) or ``application/vnd.apache.arrow.file``
(an Arrow IPC file); the answer comes in the same type. JSON answers are records with
``time`` (epoch milliseconds), ``in`` and ``out`` objects, the check count as the targeted
Wallaroo release gives it (``anomaly: {"count": 0}`` today, ``check_failures: []`` in 2023
releases; see wallaroo_versions) and ``metadata`` — flattened to ``in.tensor``-style keys
when ``dataset.separator`` is given, as the SDK asks. Arrow answers are the result batches
as the shim's models make them.
"""

import io
import json
import os
import re
import threading
import time

import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from orchzip.errors import OrchzipError
from orchzip.runtime.server._http import ApiError, read_body

ARROW_FILE = "application/vnd.apache.arrow.file"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
PANDAS_RECORDS = "application/json; format=pandas-records"
# Bodies are held whole (an Arrow IPC file is read in place, zero-copy); a JSON body is parsed
# record by record, so what it costs beyond its own bytes is its rows as Arrow plus one group
# of records as Python objects. The JSON limit is lower: text is ~3x the size of the same rows.
ARROW_BODY_LIMIT = 512 * 1024 * 1024
JSON_BODY_LIMIT = 64 * 1024 * 1024
RECORDS_PER_BATCH = 10_000
DATASET_KEYS = ("time", "in", "out", "anomaly", "metadata")
CHECK_COLUMNS = ("anomaly.count", "check_failures")  # the release's name of the check count
_DEPLOYMENT_SUFFIX = re.compile(r"-\d+$")


class ModelCache:
    """Loaded pipelines by name, reloaded when a step's model file or the pipeline changes."""

    def __init__(self, anomaly_column=None):
        from orchzip.runtime.wallaroo_versions import anomaly_column as column_of, resolve_version
        self.anomaly_column = anomaly_column or column_of(resolve_version())
        self._models, self._lock = {}, threading.Lock()

    def get(self, pipeline, specs=None):
        """The model of ``pipeline`` (a store row); ``specs``: its steps (default: its one model file)."""
        from orchzip_shim.pipelines import local_pipeline
        specs = specs or [{"name": pipeline["name"], "framework": "onnx", "path": pipeline["model_path"],
                           "tensor_column": pipeline["tensor_column"]}]
        try:
            key = tuple((s["framework"], s["path"], os.stat(s["path"]).st_mtime_ns, s.get("tensor_column"))
                        for s in specs)
        except OSError as err:
            raise ApiError(404, f"model file of pipeline {pipeline['name']!r} is missing: {err.filename}") from None
        with self._lock:
            model = self._models.get(pipeline["name"])
            if model is None or model[0] != key:
                if model is not None:
                    model[1].close()
                model = (key, local_pipeline(pipeline["name"], {"steps": specs}, self.anomaly_column))
                self._models[pipeline["name"]] = model
            return model[1]

    def close(self):
        with self._lock:
            for _, model in self._models.values():
                model.close()
            self._models.clear()


def _pipeline(store, deployment, pipeline_name):
    from orchzip.errors import UnknownPipeline
    candidates = [pipeline_name] if pipeline_name else [deployment, _DEPLOYMENT_SUFFIX.sub("", deployment)]
    for name in candidates:
        try:
            return store.get_pipeline(name)
        except UnknownPipeline as err:
            missing = err
    raise ApiError(404, str(missing))


def _kind(content_type):
    """The body's kind and its size limit; 415 before any of the body is read."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in (ARROW_FILE, ARROW_STREAM):
        return kind, ARROW_BODY_LIMIT
    if kind == "application/json":
        return kind, JSON_BODY_LIMIT
    raise ApiError(415, f"content type {content_type or '(none)'!r} is not one of {PANDAS_RECORDS!r}, {ARROW_FILE!r}")


def _read_table(kind, raw):
    if kind in (ARROW_FILE, ARROW_STREAM):
        try:
            reader = pa.ipc.open_file(raw) if kind == ARROW_FILE else pa.ipc.open_stream(raw)
            return reader.read_all(), "arrow"
        except (pa.ArrowInvalid, OSError) as err:
            raise ApiError(400, f"body is not an Arrow IPC {kind.rsplit('.', 1)[1]}: {err}") from None
    return records_table(raw), "json"


def _refuse_constant(constant):
    raise ValueError(f"{constant} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_SPACE = re.compile(r"[ \t\n\r]*")


def records_table(raw):
    """A pandas-records body (a JSON list of objects) as an Arrow table, record by record.

    Only ``RECORDS_PER_BATCH`` records live as Python objects at a time; each group becomes an
    Arrow batch at once. Parsing the whole list first made a 48 MB body cost 1.3 GB.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, "body is not UTF-8 JSON; send df.to_json(orient='records')") from None
    at = _SPACE.match(text).end()
    if not text.startswith("[", at):
        raise ApiError(400, "body must be a JSON list of records (pandas-records), e.g. [{\"tensor\": [...]}]")
    at, tables, group = _SPACE.match(text, at + 1).end(), [], []
    while not text.startswith("]", at):
        try:
            record, at = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError) as err:
            where = f" ({err.msg} at character {err.pos})" if isinstance(err, json.JSONDecodeError) else f" ({err})"
            raise ApiError(400, f"body is not valid JSON{where}; send df.to_json(orient='records')") from None
        if not isinstance(record, dict):
            raise ApiError(400, f"record {sum(t.num_rows for t in tables) + len(group)} is not a JSON object; "
                                "send a list of records (pandas-records)")
        group.append(record)
        if len(group) == RECORDS_PER_BATCH:
            tables.append(_group_table(group, tables))
            group = []
        at = _SPACE.match(text, at).end()
        if text.startswith(",", at):
            at = _SPACE.match(text, at + 1).end()
        elif not text.startswith("]", at):
            raise ApiError(400, f"body is not valid JSON (expected ',' or ']' at character {at})")
    if text[_SPACE.match(text, at + 1).end():]:
        raise ApiError(400, "body is not valid JSON (extra data after the list of records)")
    if group:
        tables.append(_group_table(group, tables))
    if not tables:
        raise ApiError(400, "body holds no records")
    try:
        return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise ApiError(400, f"records do not form a table (columns of mixed types?): {err}") from None


def _group_table(group, tables):
    try:
        return pa.Table.from_pylist(group)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as err:
        raise ApiError(400, f"records do not form a table (columns of mixed types?): {err}") from None


def _infer(ctx, deployment, pipeline_name, kind, raw):
    pipeline = _pipeline(ctx.store, deployment, pipeline_name)
    table, kind = _read_table(kind, raw)
    if table.num_rows == 0:
        raise ApiError(400, "body holds no rows to infer")
    from orchzip.runtime.model_envs import with_model_env
    from orchzip.runtime.registry import pipeline_specs
    try:
        # A step whose environment cache was cleared gets it rebuilt rather than a failed answer.
        specs = [with_model_env(s) for s in pipeline_specs(ctx.store, pipeline)]
        model = ctx.models.get(pipeline, specs)
    except OrchzipError as err:  # a step's model or its environment cannot load
        raise ApiError(400, str(err)) from None
    started = time.perf_counter_ns()
    try:
        batch = model.infer_batch(table.combine_chunks().to_batches()[0])
    except OrchzipError as err:
        raise ApiError(400, str(err)) from None
    elapsed = time.perf_counter_ns() - started
    return batch, kind, {"pipeline": pipeline, "last_model": specs[-1], "elapsed": elapsed}


def _arrow_bytes(batch):
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def _metadata(info):
    last = info["last_model"]  # as Wallaroo says which model answered: the last step's
    name = last["name"] if last.get("version") else os.path.basename(last["path"])
    return {"last_model": json.dumps({"model_name": name, "model_sha": last.get("sha256") or ""}),
            "pipeline_version": "", "elapsed": [info["elapsed"]], "dropped": [], "partition": "local"}


def _wanted(params):
    dataset = params.getlist("dataset[]") or params.getlist("dataset") or ["*"]
    wanted = set(DATASET_KEYS) if "*" in dataset else {"anomaly" if d == "check_failures" else d for d in dataset}
    wanted -= set(params.getlist("dataset.exclude[]") or params.getlist("dataset.exclude"))
    return wanted


def records(batch, info, params):
    """The result batch as Wallaroo's pandas-records answer."""
    wanted = _wanted(params)
    separator = params.get("dataset.separator")
    if separator is None and params.get("dataset.flatten", "").lower() == "true":
        separator = "."
    times = batch.column("time").cast(pa.int64()).to_pylist()
    columns = {n: batch.column(n).to_pylist() for n in batch.schema.names if n not in ("time", *CHECK_COLUMNS)}
    metadata = _metadata(info) if "metadata" in wanted else None
    out = []
    for i, ms in enumerate(times):
        row = {"time": ms} if "time" in wanted else {}
        for group in ("in", "out"):
            if group in wanted:
                values = {n.split(".", 1)[1]: c[i] for n, c in columns.items() if n.startswith(group + ".")}
                if separator is None:
                    row[group] = values
                else:
                    row.update({f"{group}{separator}{k}": v for k, v in values.items()})
        if "anomaly" in wanted:
            row.update(_checks(batch.schema.names, separator))
        if metadata is not None:
            row["metadata"] = metadata
        out.append(row)
    return out


def records_json(batch, info, params):
    """:func:`records` as JSON text in pieces of ``RECORDS_PER_BATCH`` rows, for a streamed answer."""
    yield b"["
    for offset in range(0, batch.num_rows, RECORDS_PER_BATCH):
        chunk = records(batch.slice(offset, RECORDS_PER_BATCH), info, params)
        yield (b"," if offset else b"") + json.dumps(chunk)[1:-1].encode()
    yield b"]"


def _checks(names, separator):
    """The check count as the release answers it: 2023 a list of failures, later a count."""
    if "check_failures" in names:
        return {"check_failures": []}
    return {"anomaly": {"count": 0}} if separator is None else {f"anomaly{separator}count": 0}


async def infer(request):
    ctx = request.app.state.ctx
    kind, limit = _kind(request.headers.get("content-type", ""))
    raw = await read_body(request, limit)
    params = request.query_params
    batch, kind, info = await run_in_threadpool(
        _infer, ctx, request.path_params["deployment"], request.path_params.get("pipeline"), kind, raw)
    del raw  # the body is not needed for the answer
    if kind == "arrow":
        data = await run_in_threadpool(_arrow_bytes, batch)
        return Response(data, media_type=ARROW_FILE)
    # Streamed: the answer's text (about 3x the body) is never whole in memory.
    return StreamingResponse(records_json(batch, info, params), media_type=PANDAS_RECORDS)


def routes():
    return [
        Route("/v1/api/pipelines/infer/{deployment}", infer, methods=["POST"]),
        Route("/v1/api/pipelines/infer/{deployment}/{pipeline}", infer, methods=["POST"]),
    ]


__all__ = ["routes", "ModelCache", "records", "records_json", "records_table", "ARROW_BODY_LIMIT", "JSON_BODY_LIMIT"]
