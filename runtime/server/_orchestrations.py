"""Orchestrations: ``/v1/api/orchestration/upload``, ``get_by_id``, ``list``, ``list_all``.

An upload is checked as ``orchzip inspect`` checks a zip (paths, links, sizes, every entry
read) before anything is kept; a zip that passes is stored under
``<state>/orchestrations/<id>.zip`` with status ``pending_packaging``. Packaging, on a
background thread, unpacks it, finds main.py and builds the task environment from its
requirements.txt: ``ready``, or ``error`` with the reason.
"""

import hashlib
import json
import logging
import os
import tempfile
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchzip.errors import OrchzipError
from orchzip.runtime.server._http import ApiError, endpoint, field, int_id

log = logging.getLogger("orchzip.server")

CHUNK = 1 << 20


def orchestration_json(row):
    return {
        "id": row["id"], "workspace_id": row["workspace_id"], "sha": row["sha"], "name": row["name"],
        "file_name": row["file_name"], "file_size": row["file_size"], "task_id": None,
        "owner_id": row["owner_id"], "created_by": row["owner_id"], "image_path": "local",
        "status": row["status"], "error": row["error"], "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _limited(request, limit):
    """``request`` whose body reading stops with 413 past ``limit`` bytes, however it is sent."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"upload of {int(declared):,} bytes is over the limit of {limit:,} bytes")
    seen = 0

    async def receive():
        nonlocal seen
        message = await request.receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise ApiError(413, f"upload is over the limit of {limit:,} bytes")
        return message

    return Request(request.scope, receive)


async def _metadata(form):
    raw = form.get("metadata")
    if raw is None:
        raise ApiError(422, "missing multipart part 'metadata' (JSON {\"workspace_id\": N, \"name\": \"...\"})")
    if isinstance(raw, UploadFile):  # sent with a file name: read it all the same
        raw = await raw.read(CHUNK + 1)
        if len(raw) > CHUNK:
            raise ApiError(413, "part 'metadata' is over 1 MiB")
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "part 'metadata' is not valid JSON") from None
    if not isinstance(meta, dict):
        raise ApiError(400, "part 'metadata' must be a JSON object")
    return field(meta, "workspace_id", "int"), field(meta, "name", "str", required=False)


async def _save(upload, folder, limit):
    """Copy the uploaded file into ``folder``; returns (temp path, size, sha256)."""
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".zip", dir=folder)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"upload is over the limit of {limit:,} bytes")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp, size, digest.hexdigest()


async def upload(request):
    ctx = request.app.state.ctx
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(415, "an upload is multipart/form-data with parts 'file' (the zip) and 'metadata' (JSON)")
    try:
        form = await _limited(request, ctx.max_upload_bytes + CHUNK).form(max_files=2, max_fields=8)
    except HTTPException as err:
        raise ApiError(400, f"malformed multipart body: {err.detail}") from None
    try:
        workspace_id, name = await _metadata(form)
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise ApiError(422, "missing multipart part 'file' holding the orchestration zip")
        folder = ctx.store.dir_for("orchestrations")
        tmp, size, sha = await _save(part, folder, ctx.max_upload_bytes)
        try:
            row = await run_in_threadpool(_register, ctx, tmp, workspace_id, name, part.filename, size, sha)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    finally:
        await form.close()
    ctx.submit_packaging(row["id"])
    return JSONResponse({"id": row["id"]}, status_code=202)


def _register(ctx, tmp, workspace_id, name, file_name, size, sha):
    from orchzip.builder import inspect_zip
    ctx.store.get_workspace(id=workspace_id)
    try:
        inspect_zip(tmp)
    except OrchzipError as err:
        raise ApiError(400, f"refused: {str(err).replace(tmp, file_name or 'the upload')}") from None
    orch_id = str(uuid.uuid4())
    path = os.path.join(os.path.dirname(tmp), f"{orch_id}.zip")
    os.replace(tmp, path)
    file_name = os.path.basename(file_name or "") or f"{orch_id}.zip"
    return ctx.store.create_orchestration(workspace_id, name, file_name, size, sha, path, orch_id=orch_id)


def package(ctx, orch_id):
    """Packaging of one uploaded orchestration (runs on a background thread)."""
    from orchzip.builder import safe_extract
    from orchzip.runtime.environments import task_interpreter
    from orchzip.runtime.runner import find_main

    store = ctx.store
    row = store.update_orchestration(orch_id, status="packaging", error=None)
    try:
        with tempfile.TemporaryDirectory(prefix="packaging-", dir=store.dir_for("tmp")) as tmp:
            work_dir = safe_extract(row["path"], os.path.join(tmp, "work"))
            find_main(work_dir)
            if not ctx.no_env:
                note = task_interpreter(work_dir, on_progress=lambda line: log.info("packaging %s: %s", orch_id, line))[2]
                log.info("packaging %s: %s", orch_id, note)
    except OrchzipError as err:
        log.warning("orchestration %s: packaging failed: %s", orch_id, err)
        store.update_orchestration(orch_id, status="error", error=str(err))
        return
    except Exception as err:
        log.exception("orchestration %s: packaging failed", orch_id)
        store.update_orchestration(orch_id, status="error", error=f"internal error while packaging: {err!r}")
        return
    store.update_orchestration(orch_id, status="ready")


def get_by_id(ctx, body):
    return orchestration_json(ctx.store.get_orchestration(field(body, "id", "str")))


def list_(ctx, body):
    workspace_id = field(body, "workspace_id", "int")
    ctx.store.get_workspace(id=workspace_id)
    return [orchestration_json(r) for r in ctx.store.list_orchestrations(workspace_id)]


def list_all(ctx, body):
    """Every orchestration with its tasks and workspace, as Wallaroo answers it.

    ``workspace_ids`` and ``task_run_status`` filter when not empty (``[]``: all); with
    ``task_run_status`` only tasks whose latest run has one of those statuses are listed, and
    only orchestrations that have such a task; ``killed`` keeps tasks killed or not. The time
    range of Wallaroo's request is accepted and not applied.
    """
    from orchzip.runtime.server._connections import workspace_json
    from orchzip.runtime.server._tasks import task_json
    workspace_ids = _int_list(body, "workspace_ids")
    run_statuses = _str_list(body, "task_run_status")
    killed = field(body, "killed", "bool", required=False)
    if body.get("time_range") is not None and not isinstance(body["time_range"], list):
        raise ApiError(422, "field 'time_range' must be a list")
    store = ctx.store
    workspaces = {w["id"]: workspace_json(store, w) for w in store.list_workspaces()}
    tasks_of = {}
    for task in store.list_tasks():
        if task.get("orch_id"):
            tasks_of.setdefault(task["orch_id"], []).append(task_json(store, task))
    items = []
    for row in store.list_orchestrations():
        if workspace_ids and row["workspace_id"] not in workspace_ids:
            continue
        tasks = tasks_of.get(row["id"], [])
        if killed is not None:
            tasks = [t for t in tasks if t["killed"] == killed]
        if run_statuses:
            tasks = [t for t in tasks if t["last_runs"] and t["last_runs"][0]["status"] in run_statuses]
            if not tasks:
                continue
        if row["workspace_id"] not in workspaces:
            continue  # its workspace was deleted; Wallaroo's answer always names one
        items.append({"orchestration": orchestration_json(row), "tasks": tasks,
                      "workspace": workspaces[row["workspace_id"]]})
    return {"orchestrations": items}


def _int_list(body, name):
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ApiError(422, f"field {name!r} must be a list of integer ids")
    return value


def _str_list(body, name):
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(422, f"field {name!r} must be a list of strings")
    return value


def routes():
    base = "/v1/api/orchestration"
    return [
        Route(f"{base}/upload", upload, methods=["POST"]),
        Route(f"{base}/get_by_id", endpoint(get_by_id), methods=["POST"]),
        Route(f"{base}/list", endpoint(list_), methods=["POST"]),
        Route(f"{base}/list_all", endpoint(list_all), methods=["POST"]),
    ]


__all__ = ["routes", "package", "orchestration_json", "int_id"]
