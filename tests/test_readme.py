"""The README stays true: CI runs its second command, the first works on a fresh clone, and
every line of its tour runs as written."""

import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import REPO


def readme_commands():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)][:2]


def test_readme_opens_with_two_one_line_commands_and_ci_runs_the_second():
    quickstart, tests = readme_commands()
    assert "\n" not in quickstart and "\n" not in tests
    assert "orchzip quickstart" in quickstart and "pytest" in tests
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as fh:
        ci_lines = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    assert tests in ci_lines


@pytest.mark.timeout(900)
def test_the_quickstart_command_works_in_a_fresh_clone(tmp_path):
    quickstart, _ = readme_commands()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", REPO, str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("ORCHZIP_STATE_DIR", "VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(["bash", "-c", quickstart], cwd=clone, env=env, capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "rows read 4000, inferred 4000, written 4000" in done.stdout
    lines = done.stdout.splitlines()
    first = lines.index("first 5 predictions:")
    assert len([line for line in lines[first + 1:first + 6] if "<-" in line]) == 5


def tour_blocks():
    """Every ```bash block after the two commands: the tour, run as a user pastes it."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    return [block for block in re.findall(r"```bash\n(.*?)```", text, re.S)][2:]


def test_the_tour_holds_no_placeholder_and_no_path_outside_the_clone():
    tour = "\n".join(tour_blocks())
    assert tour.strip(), "the README has no tour"
    for placeholder in ("RUN_ID", "ORCH_ID", "TASK_ID", "../"):
        assert placeholder not in tour, f"the tour holds {placeholder!r}, which a user cannot paste"


@pytest.mark.timeout(900)
def test_every_tour_line_runs_as_written_in_a_fresh_clone(tmp_path):
    """The tour's lines, in order, in one shell, in a fresh clone; the first failing line fails the test.

    The clone's `.venv` is this test's environment (what the README's first command would have
    made). Lines the tour sends to the background are stopped with the shell's process group.
    The tour's server listens on 127.0.0.1:8080, so tours on one machine take turns (a lock).
    """
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", REPO, str(clone)], check=True, timeout=120)
    os.symlink(sys.prefix, clone / ".venv")
    if not (clone / ".venv" / "bin" / "activate").exists():
        pytest.fail("the tests must run in a virtual environment (the README's second command makes one)")
    script = "set -eE -o pipefail\ntrap 'echo \"TOUR LINE FAILED: $BASH_COMMAND\" >&2' ERR\n"
    script += "\n".join(tour_blocks())
    env = {k: v for k, v in os.environ.items()
           if k not in ("ORCHZIP_STATE_DIR", "VIRTUAL_ENV", "PYTHONPATH", "WALLAROO_URL", "WALLAROO_TOKEN")}
    with open(os.path.join(tempfile.gettempdir(), "orchzip-readme-tour.lock"), "w") as lock:
        _lock_within(lock, seconds=600)
        # Output to files, not pipes: a background line would hold a pipe open after the shell ends.
        with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
            tour = subprocess.Popen(["bash", "-c", script], cwd=clone, env=env, stdout=out, stderr=err,
                                    text=True, start_new_session=True)
            try:
                tour.wait(timeout=840)
            finally:
                _stop_group(tour.pid)
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert tour.returncode == 0, f"exit {tour.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    assert "TOUR LINE FAILED" not in err, err[-3000:]
    assert "rows read 4000, inferred 4000, written 4000" in out
    assert (clone / "results.parquet").is_file()


def _lock_within(lock, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.fail("another README tour held the lock for too long")
            time.sleep(0.5)


def _stop_group(pgid):
    """Stop what the tour left running (its background lines), then make sure it is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
