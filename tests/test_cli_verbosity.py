"""-q and -v: before or after the command; quiet by default (no installer output on a first run,
a one-line progress on a terminal instead, every line with -v)."""

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from conftest import REPO

UNINSTALLABLE = os.path.join(REPO, "tests", "fixtures", "wallaroo", "uninstallable")
# What uv prints while it installs: never on the terminal without -v.
INSTALLER_WORDS = ("Resolved ", "Installed ", "Bytecode compiled")


@pytest.fixture
def hello(tmp_path):
    folder = tmp_path / "hello"
    folder.mkdir()
    (folder / "main.py").write_text("print('hi from main', flush=True)\n")
    (folder / "requirements.txt").write_text("# the image's packages only\n")
    return str(folder)


def orchzip(tmp_path, cache, *argv, timeout=600):
    env = dict(os.environ, ORCHZIP_STATE_DIR=str(tmp_path / "state"), ORCHZIP_ENV_CACHE=str(tmp_path / cache))
    return subprocess.run([sys.executable, "-m", "orchzip", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(tmp_path))


@pytest.mark.timeout(600)
def test_a_first_run_shows_no_installer_output_unless_verbose(tmp_path, hello):
    quiet = orchzip(tmp_path, "envs-default", "run", hello)
    assert quiet.returncode == 0, quiet.stderr
    assert "building the task environment" in quiet.stderr and "task environment ready in" in quiet.stderr
    assert not any(word in quiet.stderr + quiet.stdout for word in INSTALLER_WORDS), quiet.stderr + quiet.stdout
    assert "hi from main" in quiet.stdout
    logged = orchzip(tmp_path, "envs-default", "runs", "logs", "--last")
    assert "Installed " in logged.stdout, "the run's log keeps the installer's output"

    verbose = orchzip(tmp_path, "envs-verbose", "run", hello, "-v")  # -v after the command
    assert verbose.returncode == 0, verbose.stderr
    assert "Resolved " in verbose.stderr and "Installed " in verbose.stderr
    assert "Installed " not in verbose.stdout, "installer lines are progress, not the task's output"


@pytest.mark.timeout(300)
def test_quiet_shows_no_progress_and_still_the_error(tmp_path):
    failed = orchzip(tmp_path, "envs-quiet", "-q", "run", UNINSTALLABLE)
    assert failed.returncode != 0
    assert "building the task environment" not in failed.stderr
    assert failed.stderr.startswith("orchzip: error: cannot install the task's requirements.txt"), failed.stderr


def _on_a_terminal(argv, env, timeout):
    """``argv`` with stdout and stderr on a pseudo-terminal; everything it wrote."""
    master, slave = pty.openpty()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the other side closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        os.close(master)
    return process.returncode, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.timeout(600)
def test_on_a_terminal_the_installer_passes_by_in_one_line(tmp_path, hello):
    env = dict(os.environ, ORCHZIP_STATE_DIR=str(tmp_path / "state"), ORCHZIP_ENV_CACHE=str(tmp_path / "envs-tty"),
               COLUMNS="100")
    code, out = _on_a_terminal([sys.executable, "-m", "orchzip", "run", hello], env, 540)
    assert code == 0, out
    lines = out.replace("\r\n", "\n").split("\n")
    # Each installer line is drawn over the one before ("\r" + erase line), never left on a line of its own.
    assert "\r\x1b[K" in out and "Installed " in out
    assert not any(line.startswith(INSTALLER_WORDS) for line in lines), lines
    assert any("task environment ready in" in line for line in lines)
    assert "hi from main" in out
