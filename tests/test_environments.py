"""Task environments: the cache key, the interpreter, a failed install, concurrent builds."""

import os
import subprocess
import sys
import threading

import pytest

from orchzip.errors import OrchzipError
from orchzip.runtime import environments
from orchzip.runtime.environments import (
    RequirementsNotInstallable,
    environment_key,
    ensure_environment,
    find_task_python,
    normalise_requirements,
    task_interpreter,
    task_python_path,
)


def test_the_key_ignores_comments_blank_lines_order_and_the_sdk():
    a = "pandas>=2\n# a comment\n\nrequests==2.32.3  # pinned\nwallaroo==2023.2.1\n"
    b = "requests==2.32.3\npandas>=2\n"
    assert normalise_requirements(a) == ["pandas>=2", "requests==2.32.3"]
    assert environment_key(a, "3.10.13") == environment_key(b, "3.10.13")


def test_the_key_changes_with_the_requirements_and_the_python_version():
    base = environment_key("requests\n", "3.10.13")
    assert environment_key("requests==2.0\n", "3.10.13") != base
    assert environment_key("requests\n", "3.11.7") != base


def test_the_key_covers_files_included_with_dash_r(tmp_path):
    (tmp_path / "more.txt").write_text("requests==2.31.0\n")
    before = environments._with_includes("-r more.txt\n", str(tmp_path))
    (tmp_path / "more.txt").write_text("requests==2.32.0\n")
    after = environments._with_includes("-r more.txt\n", str(tmp_path))
    assert environment_key(before, "3.10.13") != environment_key(after, "3.10.13")


def test_the_task_python_is_3_10_when_one_is_found_and_can_be_overridden(monkeypatch):
    path, version, why = find_task_python()
    if not version.startswith("3.10."):
        pytest.skip("no Python 3.10 on this machine")
    assert os.path.isfile(path) and "3.10" in why
    monkeypatch.setenv("ORCHZIP_TASK_PYTHON", sys.executable)
    assert find_task_python() == (sys.executable, "%d.%d.%d" % sys.version_info[:3], "ORCHZIP_TASK_PYTHON")
    monkeypatch.setenv("ORCHZIP_TASK_PYTHON", "/nonexistent/python")
    with pytest.raises(OrchzipError, match="ORCHZIP_TASK_PYTHON"):
        find_task_python()


def test_no_env_runs_in_orchzips_own_python_with_the_standin_on_the_path(tmp_path):
    python, path, note = task_interpreter(str(tmp_path), no_env=True)
    assert python == sys.executable
    assert path == [environments.STANDIN_DIR]
    assert "--no-env" in note


def test_the_shim_copy_for_task_environments_imports_as_orchzip_shim(tmp_path):
    standin, shim_dir = task_python_path(str(tmp_path))
    assert os.path.isfile(os.path.join(shim_dir, "orchzip_shim", "connectors", "http_connector.py"))
    assert task_python_path(str(tmp_path))[1] == shim_dir  # content-addressed: made once
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([standin, shim_dir]))
    code = "import orchzip_shim, wallaroo.object; print(orchzip_shim.__file__)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(shim_dir)


def test_uvs_reason_is_kept_when_a_failed_install_is_reported():
    lines = ["Using Python 3.10.13 environment at: env",
             "  × No solution found when resolving dependencies:",
             "  ╰─▶ Because you require numpy==1.26.4 and numpy==2.0.0, we can conclude that your "
             "requirements are unsatisfiable."]
    message = str(RequirementsNotInstallable.from_args("3.10.13", lines))
    assert "Using Python" not in message
    assert "No solution found" in message and "numpy==1.26.4 and numpy==2.0.0" in message
    assert message.startswith("cannot install the task's requirements.txt (Python 3.10.13); uv says:")


@pytest.mark.timeout(300)
def test_requirements_that_cannot_be_installed_fail_with_uvs_reason_and_leave_no_environment(tmp_path):
    progress = []
    with pytest.raises(RequirementsNotInstallable) as caught:
        ensure_environment(str(tmp_path), "numpy==1.26.4\nnumpy==2.0.0\n", on_progress=progress.append)
    message = str(caught.value)
    assert "numpy" in message and ("1.26.4" in message or "2.0.0" in message), message
    assert "Traceback" not in message
    assert progress and progress[0].startswith("building the task environment")
    # Nothing half-built (the SDK's pins, read before the build, stay cached).
    assert not [n for n in os.listdir(tmp_path) if (tmp_path / n).is_dir() and n != "wallaroo-sdk"]


@pytest.mark.timeout(900)
def test_two_runs_building_the_same_environment_build_it_once(tmp_path):
    results, errors = [], []

    def build():
        try:
            results.append(ensure_environment(str(tmp_path), "# image packages only\n"))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=850)
    assert not errors, errors
    assert sorted(r.built for r in results) == [False, True]
    assert results[0].python == results[1].python
    envs = [n for n in os.listdir(tmp_path) if os.path.isdir(tmp_path / n) and n.startswith("py")]
    assert len(envs) == 1
    done = subprocess.run([results[0].python, "-c", "import pandas, pyarrow, numpy, onnxruntime, requests"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    again = ensure_environment(str(tmp_path), "")
    assert not again.built and again.python == results[0].python
