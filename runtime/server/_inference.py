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
from starlette.responses import Response
from starlette.routing import Route

from orchzip.errors import OrchzipError
from orchzip.runtime.server._http import ApiError, read_body

ARROW_FILE = "application/vnd.apache.arrow.file"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
PANDAS_RECORDS = "application/json; format=pandas-records"
BODY_LIMIT = 512 * 1024 * 1024
DATASET_KEYS = ("time", "in", "out", "anomaly", "metadata")
CHECK_COLUMNS = ("anomaly.count", "check_failures")  # the release's name of the check count
_DEPLOYMENT_SUFFIX = re.compile(r"-\d+$")


class ModelCache:
    """Loaded models by file, reloaded when the file or the pipeline changes."""

    def __init__(self, anomaly_column=None):
        from orchzip.runtime.wallaroo_versions import anomaly_column as column_of, resolve_version
        self.anomaly_column = anomaly_column or column_of(resolve_version())
        self._models, self._lock = {}, threading.Lock()

    def get(self, pipeline):
        from orchzip_shim.models import OnnxModel
        path = pipeline["model_path"]
        try:
            key = (pipeline["name"], path, os.stat(path).st_mtime_ns, pipeline["tensor_column"])
        except OSError:
            raise ApiError(404, f"model file of pipeline {pipeline['name']!r} is missing: {path}") from None
        with self._lock:
            model = self._models.get(pipeline["name"])
            if model is None or model[0] != key:
                model = (key, OnnxModel(path, name=pipeline["name"], tensor_column=pipeline["tensor_column"],
                                        anomaly_column=self.anomaly_column))
                self._models[pipeline["name"]] = model
            return model[1]


def _pipeline(store, deployment, pipeline_name):
    from orchzip.errors import UnknownPipeline
    candidates = [pipeline_name] if pipeline_name else [deployment, _DEPLOYMENT_SUFFIX.sub("", deployment)]
    for name in candidates:
        try:
            return store.get_pipeline(name)
        except UnknownPipeline as err:
            missing = err
    raise ApiError(404, str(missing))


def _read_table(content_type, raw):
    kind = content_type.split(";")[0].strip().lower()
    if kind in (ARROW_FILE, ARROW_STREAM):
        try:
            reader = pa.ipc.open_file(raw) if kind == ARROW_FILE else pa.ipc.open_stream(raw)
            return reader.read_all(), "arrow"
        except (pa.ArrowInvalid, OSError) as err:
            raise ApiError(400, f"body is not an Arrow IPC {kind.rsplit('.', 1)[1]}: {err}") from None
    if kind == "application/json":
        try:
            records = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError(400, "body is not valid JSON; send df.to_json(orient='records')") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ApiError(400, "body must be a JSON list of records (pandas-records), e.g. [{\"tensor\": [...]}]")
        if not records:
            raise ApiError(400, "body holds no records")
        try:
            return pa.Table.from_pylist(records), "json"
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ApiError(400, f"records do not form a table (columns of mixed types?): {err}") from None
    raise ApiError(415, f"content type {content_type or '(none)'!r} is not one of {PANDAS_RECORDS!r}, {ARROW_FILE!r}")


def _infer(ctx, deployment, pipeline_name, content_type, raw):
    pipeline = _pipeline(ctx.store, deployment, pipeline_name)
    table, kind = _read_table(content_type, raw)
    if table.num_rows == 0:
        raise ApiError(400, "body holds no rows to infer")
    model = ctx.models.get(pipeline)
    started = time.perf_counter_ns()
    try:
        batch = model.infer_batch(table.combine_chunks().to_batches()[0])
    except OrchzipError as err:
        raise ApiError(400, str(err)) from None
    elapsed = time.perf_counter_ns() - started
    return batch, kind, {"pipeline": pipeline, "elapsed": elapsed}


def _arrow_bytes(batch):
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def _metadata(info):
    pipeline = info["pipeline"]
    return {"last_model": json.dumps({"model_name": os.path.basename(pipeline["model_path"]), "model_sha": ""}),
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


def _checks(names, separator):
    """The check count as the release answers it: 2023 a list of failures, later a count."""
    if "check_failures" in names:
        return {"check_failures": []}
    return {"anomaly": {"count": 0}} if separator is None else {f"anomaly{separator}count": 0}


async def infer(request):
    ctx = request.app.state.ctx
    raw = await read_body(request, BODY_LIMIT)
    params = request.query_params
    content_type = request.headers.get("content-type", "")
    batch, kind, info = await run_in_threadpool(
        _infer, ctx, request.path_params["deployment"], request.path_params.get("pipeline"), content_type, raw)
    if kind == "arrow":
        data = await run_in_threadpool(_arrow_bytes, batch)
        return Response(data, media_type=ARROW_FILE)
    rows = await run_in_threadpool(records, batch, info, params)
    return Response(json.dumps(rows).encode(), media_type=PANDAS_RECORDS)


def routes():
    return [
        Route("/v1/api/pipelines/infer/{deployment}", infer, methods=["POST"]),
        Route("/v1/api/pipelines/infer/{deployment}/{pipeline}", infer, methods=["POST"]),
    ]


__all__ = ["routes", "ModelCache", "records"]
