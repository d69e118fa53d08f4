"""The README's two commands stay true: CI runs the second; the first works on a fresh clone."""

import os
import re
import subprocess

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
