"""Models registered by name with versions, and the steps of pipelines made of them.

``orchzip models upload NAME FILE`` checks the model at the door (an ONNX file must load;
other frameworks go through ``model_frameworks.check_upload``), copies it under the state
directory (``models/NAME/VERSION/``) and records it as the next integer version of NAME.
Tasks and ``orchzip serve`` only ever read that stored copy, so changing or deleting the
user's file later changes nothing.

What travels to a task or to serve is a *model spec*, one dict per step (see
:func:`model_spec`); a pipeline is a list of them (:func:`pipeline_specs`). Pipelines made
with ``--model FILE`` before registered models existed are one ONNX step read from that file.
"""

import fcntl
import glob
import hashlib
import os
import re
import shutil
import time

from orchzip.errors import ConfigError
from orchzip.runtime.store import NotFound, check_model_file, utcnow

__all__ = ["FRAMEWORKS", "upload_model", "list_models", "get_model", "delete_model", "resolve_step",
           "model_spec", "pipeline_specs", "create_pipeline", "pipelines_using", "steps_of",
           "remove_abandoned_uploads"]

FRAMEWORKS = ("onnx", "python", "custom", "sklearn", "xgboost")
# Wallaroo's rule for model names (the SDK checks it at upload): DNS-compatible.
_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z0-9]$|^[a-zA-Z]$")
_MODEL_SELECT = ("SELECT m.*, w.name AS workspace_name FROM models m "
                 "LEFT JOIN workspaces w ON w.id = m.workspace_id")
# An upload copies the model into models/NAME/.upload-PID-XXXXXXXX, a folder it holds locked
# until it ends (see _store_copy); a killed upload leaves it behind for remove_abandoned_uploads.
_UPLOAD_PREFIX = ".upload-"
_UPLOAD_NAME = re.compile(r"^\.upload-(\d+)-")
# A folder named as before uploads said their pid is removed once this old (its writer cannot tell).
UNMARKED_UPLOAD_SECONDS = 24 * 3600


def _check_name(name):
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"model name {name!r} must be DNS-compatible, as on Wallaroo: ASCII letters, digits "
                          f"and dashes, starting with a letter (e.g. house-price-2)")


def _check_framework(framework):
    framework = str(getattr(framework, "value", framework) or "onnx").lower()
    if framework not in FRAMEWORKS:
        raise ConfigError(f"unknown framework {framework!r}; orchzip runs: {', '.join(FRAMEWORKS)}")
    return framework


def file_sha256(path):
    """sha256 of a file, or of a folder's files as sorted (relative path, bytes) pairs."""
    digest = hashlib.sha256()
    if os.path.isfile(path):
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for file_name in sorted(files):
            full = os.path.join(root, file_name)
            digest.update(os.path.relpath(full, path).replace(os.sep, "/").encode() + b"\0")
            with open(full, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def _source(path):
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.exists(path):
        raise ConfigError(f"model file {path} does not exist; give the path of the model to upload")
    return path


def _frameworks_checker(framework):
    """``check_upload`` of the non-ONNX frameworks, or one line saying they are not here."""
    try:
        from orchzip.runtime.model_frameworks import check_upload
    except ImportError:
        raise ConfigError(f"framework {framework!r} models cannot run in this orchzip yet (ONNX models can); "
                          f"upload an .onnx file with --framework onnx") from None
    return check_upload


def upload_model(store, name, path, framework="onnx", input_schema=None, output_schema=None,
                 requirements=None, workspace=None, tensor_column=None, on_progress=None, convert_to_onnx=False):
    """Check a model, store a copy of it as the next version of ``name``; returns its row.

    :param framework: one of :data:`FRAMEWORKS` (default onnx).
    :param input_schema: a ``pyarrow.Schema`` or its JSON form (see ``model_schemas``);
        required where Wallaroo requires it (the frameworks' check says so).
    :param requirements: a requirements.txt for the model's own environment (non-ONNX), or its lines.
    :param workspace: the name of the workspace the model is in (default: none).
    :param on_progress: called with one line of text while a model environment builds.
    :param convert_to_onnx: a scikit-learn or XGBoost model is stored converted to ONNX (beside
        its pickle) and runs as an ONNX step, as Wallaroo runs the models it converts at upload.
    """
    from orchzip.runtime.model_schemas import coerce_schema, encode_schema
    _check_name(name)
    framework = _check_framework(framework)
    source = _source(path)
    workspace_id = store.get_workspace(workspace)["id"] if workspace else None
    schemas = (coerce_schema(input_schema, "--input-schema"), coerce_schema(output_schema, "--output-schema"))
    if isinstance(requirements, (str, os.PathLike)) and not os.path.isfile(requirements):
        raise ConfigError(f"--requirements {requirements}: no such file")
    if framework == "onnx":
        check_model_file(source, name)
    if convert_to_onnx and framework not in ("sklearn", "xgboost"):
        raise ConfigError(f"--convert-to-onnx converts sklearn and xgboost models, not {framework} ones; "
                          f"upload without it")
    remove_abandoned_uploads(store)
    # Checked in a folder of its own, then numbered: two uploads of one name at once never
    # share (or delete) each other's files, and each gets its own version.
    folder, held = _store_copy(store, name, source)
    stored = os.path.join(folder, os.path.basename(source.rstrip(os.sep)))
    fields, original = {}, {}
    try:
        if convert_to_onnx:
            original = {"converted_from": framework, "source_sha256": file_sha256(stored)}
            stored, framework, fields, tensor_column = _converted(name, framework, stored, schemas, on_progress)
        elif framework != "onnx":
            fields = _frameworks_checker(framework)(
                name, framework, stored, input_schema=schemas[0], output_schema=schemas[1],
                requirements=requirements, on_progress=on_progress) or {}
        row = dict(name=name, framework=framework, sha256=file_sha256(stored),
                   input_schema=fields.get("input_schema") or encode_schema(schemas[0]),
                   output_schema=fields.get("output_schema") or encode_schema(schemas[1]),
                   tensor_column=tensor_column, python=fields.get("python"),
                   requirements=_read_text(requirements), source_path=source, workspace_id=workspace_id,
                   created_at=utcnow(), **original)
        version = _record(store, row, folder, os.path.relpath(stored, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # moved to its version's folder when recorded
        os.close(held)
    return get_model(store, name, version)


def _converted(name, framework, stored, schemas, on_progress):
    """``(path, "onnx", fields, tensor column)`` of the model converted beside its stored pickle."""
    from orchzip.runtime.model_convert import convert_to_onnx
    from orchzip.runtime.tabular_frameworks import check_schemas
    check_schemas(name, framework, *schemas)  # required as for the native model, as Wallaroo does
    target = os.path.splitext(stored)[0] + ".onnx"
    result = convert_to_onnx(framework, stored, schemas[0], target, on_progress=on_progress,
                             output_schema=schemas[1], name=name)
    return result["path"], "onnx", {}, result["tensor_column"]


def _read_text(requirements):
    """The requirements' text: from a file, or its lines."""
    if requirements is None:
        return None
    if not isinstance(requirements, (str, os.PathLike)):
        return "".join(f"{line}\n" for line in requirements)
    with open(requirements, encoding="utf-8") as fh:
        return fh.read(1 << 20)


def _record(store, row, folder, relpath):
    """Number the model (the name's next version), move its folder into place, record it."""
    with store.transaction() as db:  # one writer at a time: the version and the folder are ours
        version = (db.execute("SELECT MAX(version) FROM models WHERE name = ?", (row["name"],)).fetchone()[0] or 0) + 1
        final = os.path.join(os.path.dirname(folder), str(version))
        if os.path.exists(final):  # left by an upload that died before its record was written
            shutil.rmtree(final)
        os.rename(folder, final)
        try:
            row = dict(row, version=version, path=os.path.join(final, relpath))
            db.execute(f"INSERT INTO models({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
    return version


def _store_copy(store, name, source):
    """Copy the model (file or folder) into a new folder under ``models/NAME/`` of the state.

    Returns ``(folder, fd)``: ``fd`` holds an exclusive lock on the folder until the upload
    closes it, and the folder's name carries this process's pid, so that
    :func:`remove_abandoned_uploads` tells a live upload from a killed one.
    """
    import tempfile
    from orchzip_shim.commits import fault_point
    folder = tempfile.mkdtemp(prefix=f"{_UPLOAD_PREFIX}{os.getpid()}-", dir=store.dir_for("models", name))
    held = os.open(folder, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # never blocks: nobody else knows the folder yet
    target = os.path.join(folder, os.path.basename(source.rstrip(os.sep)))
    try:
        if os.path.isdir(source):
            shutil.copytree(source, target, symlinks=False)
        else:
            shutil.copyfile(source, target)
        fault_point("upload-copied")
    except OSError as err:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(held)
        raise ConfigError(f"cannot copy model {source} into the state ({err.strerror or err})") from None
    return folder, held


def remove_abandoned_uploads(store):
    """Remove the ``models/*/.upload-*`` folders of uploads that were killed; returns their paths.

    A folder is abandoned when the pid in its name is not a running process and nobody holds
    its lock (the kernel drops a killed process's locks): a live upload, of this name or any
    other, keeps its folder. A pid reused by another process only delays the removal.
    """
    removed = []
    for folder in sorted(glob.glob(os.path.join(glob.escape(store.state_dir), "models", "*", _UPLOAD_PREFIX + "*"))):
        if _remove_if_abandoned(folder):
            removed.append(folder)
    return removed


def _remove_if_abandoned(folder):
    marked = _UPLOAD_NAME.match(os.path.basename(folder))
    try:
        if marked and _alive(int(marked.group(1))):
            return False
        if not marked and time.time() - os.stat(folder).st_mtime < UNMARKED_UPLOAD_SECONDS:
            return False
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # gone meanwhile: its upload ended, or another cleaner was first
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: its writer is alive (in another pid namespace, say)
        os.close(fd)
        return False
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)
    return not os.path.exists(folder)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def list_models(store, name=None):
    if name is None:
        return store.select(f"{_MODEL_SELECT} ORDER BY m.name, m.version")
    return store.select(f"{_MODEL_SELECT} WHERE m.name = ? ORDER BY m.version", (name,))


def get_model(store, name, version=None):
    """Version ``version`` of model ``name`` (default: its newest)."""
    versions = list_models(store, name)
    if not versions:
        known = ", ".join(sorted({m["name"] for m in list_models(store)})) or "none"
        raise NotFound(f"unknown model {name!r} (known: {known}); upload it with: "
                       f"orchzip models upload {name} FILE")
    if version is None:
        return versions[-1]
    for row in versions:
        if str(row["version"]) == str(version):
            return row
    raise NotFound(f"model {name!r} has no version {version} (versions: "
                   f"{', '.join(str(r['version']) for r in versions)})")


def resolve_step(store, ref):
    """The model row named by a step reference ``NAME`` (newest version) or ``NAME:VERSION``."""
    name, _, version = str(ref).partition(":")
    if not name:
        raise ConfigError(f"step {ref!r} names no model; write --step MODEL or --step MODEL:VERSION")
    if version and not version.isdigit():
        raise ConfigError(f"step {ref!r}: the version after ':' must be a number, e.g. {name}:2")
    return get_model(store, name, version or None)


def pipelines_using(store, model_ids):
    """Names of the pipelines that have a step of any of ``model_ids``."""
    if not model_ids:
        return []
    marks = ", ".join("?" * len(model_ids))
    rows = store.select(f"SELECT DISTINCT p.name FROM pipelines p JOIN pipeline_steps s ON s.pipeline_id = p.id "
                        f"WHERE s.model_id IN ({marks}) ORDER BY p.name", tuple(model_ids))
    return [r["name"] for r in rows]


def delete_model(store, name, version=None):
    """Delete one version of a model, or all of them; refused while a pipeline uses one.

    Returns the deleted rows.
    """
    rows = [get_model(store, name, version)] if version is not None else list_models(store, name)
    if not rows:
        get_model(store, name)  # raises the unknown-model error
    remove_abandoned_uploads(store)
    users = pipelines_using(store, [r["id"] for r in rows])
    if users:
        what = f"{name}:{version}" if version is not None else name
        raise ConfigError(f"model {what} is a step of pipeline(s) {', '.join(users)}; delete them first "
                          f"(orchzip pipelines delete {users[0]}) or create them again without it")
    with store.transaction() as db:
        db.executemany("DELETE FROM models WHERE id = ?", [(r["id"],) for r in rows])
    for row in rows:
        shutil.rmtree(os.path.dirname(row["path"]), ignore_errors=True)
    return rows


def model_spec(row, tensor_column=None):
    """The spec of a model version that tasks and serve run (the shared form of a step).

    ``converted_from`` (the framework of a model converted to ONNX at upload, else None) tells
    the ONNX step to shape its results as the output schema says, as the native model does.
    """
    return {"name": row["name"], "version": str(row["version"]), "framework": row["framework"],
            "path": row["path"], "sha256": row["sha256"],
            "tensor_column": (tensor_column or row["tensor_column"]) if row["framework"] == "onnx" else None,
            "input_schema": row["input_schema"], "output_schema": row["output_schema"], "python": row["python"],
            "converted_from": row.get("converted_from")}


def steps_of(store, pipeline):
    """The model rows of a pipeline's steps, in order ([] for a pipeline of one model file)."""
    return store.select(f"{_MODEL_SELECT} JOIN pipeline_steps s ON s.model_id = m.id "
                        f"WHERE s.pipeline_id = ? ORDER BY s.position", (pipeline["id"],))


def pipeline_specs(store, pipeline):
    """The specs of a pipeline's steps; a pipeline's ``tensor_column`` applies to its first step."""
    rows = steps_of(store, pipeline)
    if not rows:
        path = pipeline["model_path"]
        return [{"name": os.path.splitext(os.path.basename(path))[0], "version": None, "framework": "onnx",
                 "path": path, "sha256": None, "tensor_column": pipeline["tensor_column"],
                 "input_schema": None, "output_schema": None, "python": None}]
    return [model_spec(row, pipeline["tensor_column"] if i == 0 else None) for i, row in enumerate(rows)]


def create_pipeline(store, name, steps, tensor_column=None, replace=False, workspace_id=None):
    """Create pipeline ``name`` of registered model versions (``NAME`` or ``NAME:VERSION`` each)."""
    rows = [resolve_step(store, ref) for ref in steps]
    return store.create_pipeline(name, tensor_column=tensor_column, replace=replace, workspace_id=workspace_id,
                                 steps=rows)
