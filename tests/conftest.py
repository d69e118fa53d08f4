"""Shared fixtures: paths of the reference data, a CLI runner, a fresh state directory."""

import json
import os
import subprocess
import sys

import pytest

# The BigQuery emulator and its token server: session fixtures shared by every test module.
pytest_plugins = ["tests.support.bq"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIAL_DATA = os.environ.get("ORCHZIP_TUTORIAL_DATA") or os.path.join(os.path.dirname(REPO), "shared", "wallaroo-tutorial-data")
RF_MODEL = os.path.join(TUTORIAL_DATA, "rf_model.onnx")
GBR_MODEL = os.path.join(TUTORIAL_DATA, "gbr_model.onnx")
XTEST_1K = os.path.join(TUTORIAL_DATA, "xtest-1k.df.json")
EXAMPLE_MODEL = os.path.join(REPO, "examples", "houseprice", "model.onnx")
EXAMPLE_INPUTS = os.path.join(REPO, "examples", "houseprice", "inputs.parquet")
PYTHON310 = os.environ.get("ORCHZIP_PYTHON310", "/root/.pyenv/versions/3.10.13/bin/python3.10")


class CLIResult:
    def __init__(self, completed):
        self.code = completed.returncode
        self.out = completed.stdout
        self.err = completed.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"CLIResult(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / "state")


@pytest.fixture
def orchzip_cli(state_dir, tmp_path):
    """Run ``orchzip ...`` in a subprocess with a fresh state dir; returns a CLIResult."""

    def run(*argv, timeout=120, env=None, cwd=None):
        full_env = dict(os.environ, ORCHZIP_STATE_DIR=state_dir, **(env or {}))
        completed = subprocess.run(
            [sys.executable, "-m", "orchzip", *argv],
            capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or str(tmp_path),
        )
        return CLIResult(completed)

    return run


def reference_rows(path=XTEST_1K):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
