"""The real wallaroo SDK from PyPI as a test client, in a Python 3.10 environment of its own.

The SDK is never a dependency of orchzip. Its environment is built on first use and cached
under ``$ORCHZIP_TEST_CACHE`` or ``~/.cache/orchzip-tests`` (as the BigQuery emulator's is, with
the same :func:`tests.support.bq.cached_venv`). Tests that use the ``sdk_python`` fixture are
skipped only when that environment cannot be built (no network at first use).

Use it with ``from tests.support.wallaroo_sdk import sdk_python  # noqa: F401``.
"""

import os
import subprocess

import pytest

from tests.support.bq import cached_venv

SDK_VERSION = "2026.1.3"
PYTHON310 = os.environ.get("ORCHZIP_PYTHON310", "/root/.pyenv/versions/3.10.13/bin/python3.10")


@pytest.fixture(scope="session")
def sdk_python():
    """The python of a Python 3.10 environment holding wallaroo==SDK_VERSION."""
    if not os.path.exists(PYTHON310):
        pytest.skip(f"no Python 3.10 at {PYTHON310} (set ORCHZIP_PYTHON310) for the wallaroo SDK's environment")
    try:
        python = cached_venv(f"wallaroo-sdk-{SDK_VERSION}", [f"wallaroo=={SDK_VERSION}"], PYTHON310)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        last = [line for line in str(err).splitlines() if line.strip()][-1:] or [type(err).__name__]
        pytest.skip(f"the wallaroo {SDK_VERSION} environment could not be built (network?): {last[0][:300]}")
    _compile_once(python)
    return python


def site_packages(python):
    """The site-packages folder of the environment of ``python``."""
    done = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


def _compile_once(python):
    """Byte-compile the environment once: the SDK imports hundreds of modules, and the suite runs
    with PYTHONDONTWRITEBYTECODE, so otherwise every run compiles them all again."""
    root = os.path.dirname(os.path.dirname(python))
    marker = os.path.join(root, ".orchzip-compiled")
    if os.path.exists(marker):
        return
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", root], capture_output=True, timeout=900)
    open(marker, "w").close()
