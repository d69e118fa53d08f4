"""`orchzip models ...` and `orchzip pipelines create --step`: models registered by name with versions."""

import hashlib
import os
import shutil

import pytest

from conftest import RF_MODEL
from support.onnx_models import scaling_model

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cli(orchzip_cli):
    return orchzip_cli


def ok(result):
    assert result.code == 0, result
    return result


def refused(result, *fragments):
    """A refusal: exit 2, one line on stderr holding every fragment, no traceback."""
    assert result.code == 2, result
    assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err, result
    for fragment in fragments:
        assert fragment in result.err, result
    return result.err


def test_uploads_store_a_copy_as_the_next_version_and_list_get_show_them(cli, tmp_path, state_dir):
    model = scaling_model(tmp_path / "scale.onnx", 2.0)
    first = ok(cli("models", "upload", "scaler", model, "--json")).json()
    assert (first["name"], first["version"], first["framework"]) == ("scaler", 1, "onnx")
    assert first["path"] == os.path.join(state_dir, "models", "scaler", "1", "scale.onnx")
    with open(model, "rb") as fh:
        assert first["sha256"] == hashlib.sha256(fh.read()).hexdigest()
    scaling_model(tmp_path / "scale.onnx", 3.0)  # the user's file changes: version 1 keeps its copy
    second = ok(cli("models", "upload", "scaler", model, "--input-schema", '{"x": "list<float32>"}', "--json")).json()
    assert second["version"] == 2 and second["sha256"] != first["sha256"]
    assert second["input_schema"] == {"x": "list<float>"}
    with open(first["path"], "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == first["sha256"]
    text = ok(cli("models", "upload", "houseprice", RF_MODEL)).out
    assert text.startswith("model houseprice version 1 (onnx) -> ")

    listed = ok(cli("models", "list", "--json")).json()
    assert [(m["name"], m["version"]) for m in listed] == [("houseprice", 1), ("scaler", 1), ("scaler", 2)]
    assert [m["version"] for m in ok(cli("models", "list", "scaler", "--json")).json()] == [1, 2]
    table = ok(cli("models", "list")).out.splitlines()
    assert table[0].split()[:4] == ["NAME", "VERSION", "FRAMEWORK", "WORKSPACE"]
    assert ok(cli("models", "get", "scaler", "--json")).json()["version"] == 2
    assert ok(cli("models", "get", "scaler:1", "--json")).json()["sha256"] == first["sha256"]
    assert ok(cli("models", "get", "scaler", "--version", "1", "--json")).json()["version"] == 1
    shown = ok(cli("models", "get", "scaler")).out
    assert shown.startswith("scaler version 2 (onnx, sha256 ") and 'input schema: {"x": "list<float>"}' in shown


def test_a_schema_file_and_a_workspace_are_kept_with_the_model(cli, tmp_path):
    ok(cli("workspaces", "create", "team"))
    schema = tmp_path / "schema.json"
    schema.write_text('{"tensor": "fixed_size_list<float32>[18]", "id": "int64"}')
    row = ok(cli("models", "upload", "houseprice", RF_MODEL, "--output-schema", str(schema), "--workspace", "team",
                 "--json")).json()
    assert row["output_schema"] == {"tensor": "fixed_size_list<float>[18]", "id": "int64"}
    assert row["workspace_name"] == "team"
    assert ok(cli("workspaces", "get", "team", "--json")).json()["models"] == ["houseprice"]
    assert "  models:      houseprice" in ok(cli("workspaces", "get", "team")).out


def test_bad_models_and_arguments_are_refused_at_the_door(cli, tmp_path, state_dir):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    refused(cli("models", "upload", "houseprice", str(garbage)), "is not an ONNX model orchzip can run")
    refused(cli("models", "upload", "houseprice", str(tmp_path / "missing.onnx")), "missing.onnx does not exist")
    refused(cli("models", "upload", "house_price", RF_MODEL), "must be DNS-compatible")
    refused(cli("models", "upload", "houseprice", RF_MODEL, "--input-schema", '{"tensor": "list<floaty>"}'),
            "unknown Arrow type 'floaty'")
    refused(cli("models", "upload", "houseprice", RF_MODEL, "--input-schema", '{"tensor": '), "is not valid JSON")
    refused(cli("models", "upload", "houseprice", RF_MODEL, "--input-schema", "nowhere.json"),
            "neither a JSON object")
    refused(cli("models", "upload", "houseprice", RF_MODEL, "--workspace", "nope"), "unknown workspace 'nope'")
    refused(cli("models", "get", "houseprice"), "unknown model 'houseprice' (known: none)",
            "orchzip models upload houseprice FILE")
    assert not os.path.exists(os.path.join(state_dir, "models", "houseprice", "1"))  # nothing half-stored
    assert ok(cli("models", "list", "--json")).json() == []


def test_pipeline_steps_name_existing_versions_and_a_used_model_cannot_be_deleted(cli, tmp_path):
    ok(cli("models", "upload", "houseprice", RF_MODEL))
    ok(cli("models", "upload", "scaler", scaling_model(tmp_path / "s.onnx", 2.0)))
    ok(cli("models", "upload", "scaler", scaling_model(tmp_path / "s.onnx", 3.0)))
    out = ok(cli("pipelines", "create", "scaled", "--step", "houseprice", "--step", "scaler:1")).out
    assert out == "pipeline scaled -> houseprice:1 -> scaler:1\n"
    [pipeline] = ok(cli("pipelines", "list", "--json")).json()
    assert pipeline["steps"] == ["houseprice:1", "scaler:1"]
    assert ok(cli("pipelines", "list")).out.splitlines()[1].split() == ["scaled", "(default)", "houseprice:1",
                                                                          "->", "scaler:1"]
    refused(cli("pipelines", "create", "p2", "--step", "scaler:9"), "model 'scaler' has no version 9 (versions: 1, 2)")
    refused(cli("pipelines", "create", "p2", "--step", "nothing"), "unknown model 'nothing'")
    refused(cli("pipelines", "create", "p2", "--step", "scaler:x"), "must be a number")
    refused(cli("pipelines", "create", "p2"), "either --model FILE.onnx or one or more --step")
    refused(cli("pipelines", "create", "p2", "--model", RF_MODEL, "--step", "scaler"), "either --model")

    refused(cli("models", "delete", "scaler"), "model scaler is a step of pipeline(s) scaled",
            "orchzip pipelines delete scaled")
    assert ok(cli("models", "get", "scaler:1", "--json")).json()["pipelines"] == ["scaled"]
    deleted = ok(cli("models", "delete", "scaler", "--version", "2", "--json")).json()
    assert deleted == {"deleted": "model", "name": "scaler", "versions": ["2"]}
    ok(cli("pipelines", "delete", "scaled"))
    assert ok(cli("models", "delete", "scaler")).out == "deleted model scaler (version 1)\n"
    assert [m["name"] for m in ok(cli("models", "list", "--json")).json()] == ["houseprice"]


def test_a_pipeline_of_a_model_file_keeps_working_beside_registered_models(cli, tmp_path):
    model = str(tmp_path / "rf.onnx")
    shutil.copyfile(RF_MODEL, model)
    row = ok(cli("pipelines", "create", "houses", "--model", model, "--json")).json()
    assert row["model_path"] == model and row["steps"] == []
    refused(cli("pipelines", "create", "houses", "--step", "x", "--replace"), "unknown model 'x'")
    assert ok(cli("pipelines", "list", "--json")).json()[0]["model_path"] == model  # left as it was
    ok(cli("models", "upload", "houseprice", model))
    replaced = ok(cli("pipelines", "create", "houses", "--step", "houseprice", "--replace", "--json")).json()
    assert replaced["steps"] == ["houseprice:1"] and replaced["model_path"] != model


def test_uploads_of_one_name_at_once_each_get_their_own_version_and_copy(tmp_path, state_dir):
    import concurrent.futures
    from orchzip.runtime.registry import list_models, upload_model
    from orchzip.runtime.store import Store
    models = [scaling_model(tmp_path / f"s{i}.onnx", float(i + 1)) for i in range(4)]
    store = Store(state_dir)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda path: upload_model(store, "scaler", path), models))
    assert sorted(r["version"] for r in rows) == [1, 2, 3, 4]
    for row in list_models(store, "scaler"):
        with open(row["path"], "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == row["sha256"]
        with open(row["source_path"], "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == row["sha256"]  # each its own file
    assert sorted(os.listdir(os.path.join(state_dir, "models", "scaler"))) == ["1", "2", "3", "4"]


def wait_for_line(stream, text, seconds):
    """The first line of ``stream`` holding ``text``, read for at most ``seconds``."""
    import select
    import time
    deadline = time.monotonic() + seconds
    buffered = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(stream.fileno(), 4096).decode(errors="replace") if ready else ""
        if ready and not chunk:
            break  # the process closed its stderr: it ended
        buffered += chunk
        if text in buffered:
            return buffered
    raise AssertionError(f"no {text!r} within {seconds} s; read: {buffered[-2000:]!r}")


def test_a_killed_upload_leaves_a_folder_the_next_upload_removes_but_never_a_live_uploads(cli, tmp_path,
                                                                                         state_dir):
    """SIGKILL an `orchzip models upload` with its copy in its .upload-* folder: a concurrent
    upload meanwhile leaves that folder alone (its writer lives); once killed, the next upload
    removes it, and the registry reads as if the killed upload never started."""
    import signal
    import subprocess
    import sys
    folder = os.path.join(state_dir, "models", "scaler")
    first, second = scaling_model(tmp_path / "s1.onnx", 2.0), scaling_model(tmp_path / "s2.onnx", 3.0)
    writer = subprocess.Popen([sys.executable, "-m", "orchzip", "models", "upload", "scaler", first],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(tmp_path),
                              env=dict(os.environ, ORCHZIP_STATE_DIR=state_dir, ORCHZIP_FAULT="upload-copied:pause"))
    try:
        wait_for_line(writer.stderr, "orchzip-fault: paused at upload-copied", 60)
        [leftover] = [os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(".upload-")]
        assert os.listdir(leftover) == ["s1.onnx"]
        assert os.path.basename(leftover).startswith(f".upload-{writer.pid}-")
        # Concurrent upload of the same name: its writer is alive, its folder stays.
        assert ok(cli("models", "upload", "scaler", second, "--json")).json()["version"] == 1
        assert os.path.isdir(leftover)
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=30)
        writer.stderr.close()
    assert os.path.isdir(leftover)  # the kill left it
    assert [m["version"] for m in ok(cli("models", "list", "--json")).json()] == [1]

    third = ok(cli("models", "upload", "scaler", first, "--json")).json()
    assert third["version"] == 2
    assert sorted(os.listdir(folder)) == ["1", "2"]  # the leftover is gone, the versions kept
    for row in ok(cli("models", "list", "scaler", "--json")).json():
        with open(row["path"], "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == row["sha256"]
    assert ok(cli("models", "get", "scaler:1", "--json")).json()["source_path"] == second


def test_a_leftover_of_an_upload_killed_by_its_fault_hook_goes_with_the_next_delete(cli, tmp_path, state_dir):
    model = scaling_model(tmp_path / "s.onnx", 2.0)
    ok(cli("models", "upload", "keep", model))
    killed = cli("models", "upload", "scaler", model, env={"ORCHZIP_FAULT": "upload-copied:kill"})
    assert killed.code == -9, killed
    folder = os.path.join(state_dir, "models", "scaler")
    assert [f for f in os.listdir(folder) if f.startswith(".upload-")]
    assert [m["name"] for m in ok(cli("models", "list", "--json")).json()] == ["keep"]
    ok(cli("models", "delete", "keep"))
    assert os.listdir(folder) == []


def test_a_leftover_whose_lock_is_held_stays_and_an_old_unmarked_one_goes(tmp_path, state_dir):
    """The pid in a folder's name is not the only witness: a writer holding the folder's lock
    (seen from another pid namespace, say) keeps it; a folder named before uploads said their pid
    goes once a day old."""
    import fcntl
    import subprocess
    import sys
    from orchzip.runtime.registry import UNMARKED_UPLOAD_SECONDS, remove_abandoned_uploads
    from orchzip.runtime.store import Store
    store = Store(state_dir)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60).stdout.strip()
    locked = store.dir_for("models", "a", f".upload-{dead}-locked")
    fresh, old = store.dir_for("models", "b", ".upload-fresh123"), store.dir_for("models", "b", ".upload-old45678")
    stale = os.path.getmtime(old) - UNMARKED_UPLOAD_SECONDS - 60
    os.utime(old, (stale, stale))
    fd = os.open(locked, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert remove_abandoned_uploads(store) == [old]
        assert os.path.isdir(locked) and os.path.isdir(fresh)
    finally:
        os.close(fd)
    assert remove_abandoned_uploads(store) == [locked]
    assert os.path.isdir(fresh)
