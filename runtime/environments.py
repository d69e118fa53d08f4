"""A Python environment per task, built from the zip's requirements.txt with uv and cached.

Wallaroo runs a task in an image with Python 3.10 and the wallaroo SDK of its release, with
the packages that SDK pins (``pandas==2.2.0``, ``pyarrow==14.0.1``, ... for 2026.1.3), plus
the zip's requirements. A local run gets the same: a virtual environment with the image's
packages and the requirements, resolved by uv under the SDK's pins as constraints (see
``wallaroo_pins``), and the SDK stand-in and the shim on the task's ``PYTHONPATH`` (see
:func:`task_python_path`) in place of the SDK itself. Environments are kept under
``~/.cache/orchzip/envs`` (``ORCHZIP_ENV_CACHE``), keyed by the requirements, the Python
version, the target Wallaroo version and its pins and :data:`RECIPE_VERSION`, so the second
run of the same zip installs nothing and every project on the machine shares them. An
environment is built in a temporary directory and renamed into place, under a file lock that
makes a second run wait for the first.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from orchzip.errors import ConfigError
from orchzip.runtime import wallaroo_pins
from orchzip.runtime.wallaroo_versions import resolve_version

__all__ = [
    "TaskEnvironment",
    "RequirementsNotInstallable",
    "ensure_environment",
    "default_cache_dir",
    "find_task_python",
    "environment_key",
    "task_python_path",
    "resolve",
    "STANDIN_DIR",
]

# Bump when what goes into an environment changes: every cached environment is then rebuilt.
RECIPE_VERSION = 3  # 3: resolved under the target wallaroo SDK's pins
# What Wallaroo's task image provides without the zip listing it (onnxruntime runs the
# local pipelines' models, which on Wallaroo run in the pipeline, not in the task).
IMAGE_PACKAGES = ("pandas", "pyarrow", "numpy", "requests", "onnxruntime")
WANTED_PYTHON = (3, 10)
MARKER = "orchzip-env.json"
LOCK_TIMEOUT_SECONDS = 1800
STANDIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wallaroo_standin")
_SDK_LINE = re.compile(r"^wallaroo\s*($|[=<>!~;\[ ])", re.IGNORECASE)


class RequirementsNotInstallable(ConfigError):
    """uv could not install the zip's requirements; the message holds uv's reason."""

    @classmethod
    def from_args(cls, python_version, stderr):
        offline, reason = wallaroo_pins.uv_offline()
        fix = ("\nthe package index {} cannot be reached ({}), so uv used only its cache: connect once "
               "so that it can fetch what is missing".format(wallaroo_pins.index_url(), reason) if offline
               else "\nfix requirements.txt (or run with --no-env to use orchzip's own Python)")
        return cls(
            f"cannot install the task's requirements.txt (Python {python_version}); uv says:\n"
            + "\n".join(f"  {line}" for line in failure_reason(stderr)) + fix
        )


class TaskEnvironment:
    """A ready environment: ``python`` runs tasks; ``built`` tells whether this call built it."""

    def __init__(self, path, python, python_version, key, built, seconds, wallaroo_version=None):
        self.path, self.python, self.python_version = path, python, python_version
        self.key, self.built, self.seconds = key, built, seconds
        self.wallaroo_version = wallaroo_version

    def __repr__(self):
        return f"TaskEnvironment({self.path!r}, python={self.python_version}, built={self.built})"


def default_cache_dir():
    if os.environ.get("ORCHZIP_ENV_CACHE"):
        return os.path.abspath(os.environ["ORCHZIP_ENV_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "orchzip", "envs")


# -- the interpreter ------------------------------------------------------------------------

def _python_version(path):
    """``"3.10.13"`` for a working interpreter at ``path``, else None."""
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _python310_candidates():
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")
    versions = os.path.join(pyenv_root, "versions")
    found = []
    if os.path.isdir(versions):
        for name in sorted(os.listdir(versions), reverse=True):
            if re.fullmatch(r"3\.10\.\d+", name):
                found.append(os.path.join(versions, name, "bin", "python3.10"))
    found += ["/usr/local/bin/python3.10", "/usr/bin/python3.10"]
    on_path = shutil.which("python3.10")
    if on_path:
        found.append(on_path)  # last: it may be a pyenv shim that does not work
    return found


def find_task_python():
    """``(path, version, why)`` of the interpreter for task environments.

    ``ORCHZIP_TASK_PYTHON`` wins; else a Python 3.10 (what Wallaroo runs) when one is found;
    else orchzip's own interpreter.
    """
    override = os.environ.get("ORCHZIP_TASK_PYTHON")
    if override:
        version = _python_version(override)
        if version is None:
            raise ConfigError(f"ORCHZIP_TASK_PYTHON={override} is not a working Python interpreter")
        return override, version, "ORCHZIP_TASK_PYTHON"
    for path in _python310_candidates():
        if os.path.isfile(path) and os.access(path, os.X_OK):
            version = _python_version(path)
            if version and version.startswith("3.10."):
                return os.path.realpath(path), version, "Python 3.10, as Wallaroo's task image"
    version = "%d.%d.%d" % sys.version_info[:3]
    return sys.executable, version, "orchzip's own Python (no Python 3.10 found; set ORCHZIP_TASK_PYTHON)"


# -- the key --------------------------------------------------------------------------------

def normalise_requirements(text):
    """The requirement lines that matter: no comments, blanks or the wallaroo SDK; sorted."""
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line and not _SDK_LINE.match(line):
            lines.append(line)
    return sorted(lines)


def lists_the_sdk(text):
    return any(_SDK_LINE.match(raw.strip()) for raw in text.splitlines())


def environment_key(requirements_text, python_version, python_path="", wallaroo_version=None, pins=(),
                    packages=IMAGE_PACKAGES):
    """sha256 of the recipe, the interpreter, the SDK's version and pins, and the requirements."""
    payload = json.dumps({
        "recipe": RECIPE_VERSION,
        "image": list(packages),
        "python": python_version,
        "interpreter": os.path.realpath(python_path) if python_path else "",
        "platform": sys.platform,
        "wallaroo": wallaroo_version or "",
        "pins": list(pins),
        "requirements": normalise_requirements(requirements_text),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _with_includes(text, base_dir):
    """``text`` followed by the text of every file it includes with -r / -c (for the key)."""
    parts = [text]
    for path in _included_files(text, base_dir):
        try:
            with open(path, encoding="utf-8") as fh:
                parts.append(fh.read())
        except OSError:
            parts.append(f"# missing: {path}")
    return "\n".join(parts)


_INCLUDE = re.compile(r"^(-r|-c|--requirement|--constraint)(\s+|=)(\S+)")


def _included_files(text, base_dir):
    for raw in text.splitlines():
        match = _INCLUDE.match(raw.strip())
        if match and base_dir:
            yield os.path.join(base_dir, match.group(3))


def _install_text(text, base_dir):
    """The requirements uv installs: without the SDK, includes made absolute."""
    lines = []
    for raw in text.splitlines():
        match = _INCLUDE.match(raw.strip())
        if match and base_dir:
            raw = f"{match.group(1)} {os.path.join(base_dir, match.group(3))}"
        if not _SDK_LINE.match(raw.strip()):
            lines.append(raw)
    return "\n".join(lines) + "\n"


# -- building -------------------------------------------------------------------------------

def _interpreter(python):
    """``(python, version, why)`` of the base interpreter: the given one, else :func:`find_task_python`."""
    if python is None:
        return find_task_python()
    version = _python_version(python)
    if version is None:
        raise ConfigError(f"{python} is not a working Python interpreter")
    return python, version, "given"


def ensure_environment(cache_dir, requirements_text, python=None, on_progress=None, requirements_dir=None,
                       wallaroo_version=None, packages=IMAGE_PACKAGES, kind="task"):
    """The task environment for these requirements, built now unless it is cached.

    :param cache_dir: where environments live (see :func:`default_cache_dir`).
    :param requirements_text: the zip's requirements.txt ("" when it has none).
    :param python: the base interpreter (default: :func:`find_task_python`).
    :param on_progress: called with one line of text at a time while an environment builds.
    :param requirements_dir: where requirements.txt lives, to resolve its ``-r`` includes.
    :param wallaroo_version: the Wallaroo release whose SDK pins constrain the environment
        (default: ``wallaroo_versions.resolve_version()``).
    :param packages: what the image provides besides the requirements (a model's environment
        gets fewer than a task's, see ``model_envs``); part of the key.
    :param kind: the word progress lines use (``task``, ``model``).
    :returns: a :class:`TaskEnvironment`.
    """
    report = on_progress or (lambda _line: None)
    started = time.monotonic()
    python, version, why = _interpreter(python)
    wallaroo_version = resolve_version(wallaroo_version)
    pins = wallaroo_pins.sdk_pins(cache_dir, wallaroo_version, python, uv_binary())
    key = environment_key(_with_includes(requirements_text, requirements_dir), version, python,
                          wallaroo_version, pins.lines, packages)
    name = "py%s-wallaroo%s-%s" % ("".join(version.split(".")[:2]), wallaroo_version, key[:16])
    final = os.path.join(os.path.abspath(cache_dir), name)
    if not _ready(final):
        os.makedirs(cache_dir, exist_ok=True)
        with _locked(final + ".lock", report):
            if not _ready(final):
                report(f"building the {kind} environment {name} with Python {version} ({why}) "
                       f"under wallaroo {wallaroo_version}'s pins")
                if lists_the_sdk(requirements_text):
                    report("requirements.txt lists wallaroo: not installed (the task image provides it; "
                           "locally orchzip's stand-in plays it)")
                _build(final, python, version, _install_text(requirements_text, requirements_dir), pins, report,
                       packages)
                seconds = time.monotonic() - started
                report(f"{kind} environment ready in {seconds:.1f} s")
                return TaskEnvironment(final, _env_python(final), version, key, True, seconds, wallaroo_version)
    return TaskEnvironment(final, _env_python(final), version, key, False, time.monotonic() - started,
                           wallaroo_version)


def _env_python(env_dir):
    return os.path.join(env_dir, "bin", "python")


def _ready(env_dir):
    return os.path.isfile(os.path.join(env_dir, MARKER)) and os.path.exists(_env_python(env_dir))


class _locked:
    """An exclusive lock on ``path``: a second run building the same environment waits here."""

    def __init__(self, path, report):
        self.path, self.report, self.fh = path, report, None

    def __enter__(self):
        self.fh = open(self.path, "a+")
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        told = False
        while True:
            try:
                fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if not told:
                    self.report("waiting for another run that is building the same task environment")
                    told = True
                if time.monotonic() > deadline:
                    self.fh.close()
                    raise ConfigError(f"gave up waiting for the lock {self.path} after {LOCK_TIMEOUT_SECONDS} s")
                time.sleep(0.2)

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
        return False


def _build(final, python, version, requirements, pins, report, packages=IMAGE_PACKAGES):
    """Create the environment in a temporary directory beside ``final``, then rename it there."""
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(final) + ".", dir=os.path.dirname(final))
    try:
        env_dir = os.path.join(tmp, "env")
        _uv(["venv", "--relocatable", "--python", python, env_dir], tmp, version, report)
        req_file = os.path.join(tmp, "requirements.txt")
        with open(req_file, "w", encoding="utf-8") as fh:
            fh.write(requirements)
        constraints = os.path.join(tmp, "wallaroo-constraints.txt")
        with open(constraints, "w", encoding="utf-8") as fh:
            fh.write(pins.constraints_text())
        # --compile-bytecode: tasks run with PYTHONDONTWRITEBYTECODE, so without .pyc files every
        # run would compile pandas & co. again (about 1 s of each warm run).
        _uv(["pip", "install", "--compile-bytecode", "--python", _env_python(env_dir), *packages,
             "-r", req_file, "-c", constraints, *_offline_flag()], tmp, version, report)
        with open(os.path.join(env_dir, MARKER), "w", encoding="utf-8") as fh:
            json.dump({"recipe": RECIPE_VERSION, "python": version, "base": python,
                       "image": list(packages), "requirements": requirements,
                       "wallaroo": pins.version, "pins": pins.lines}, fh, indent=1)
        if os.path.exists(final):
            shutil.rmtree(final)  # left by a build that died before its marker was written
        os.rename(env_dir, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class InstallerOutput(str):
    """A progress line that is the installer's (uv's) own output, not orchzip's: a CLI shows it
    only when asked to be verbose."""

    from_installer = True


def uv_binary():
    try:
        from uv import find_uv_bin
        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if not found:
        raise ConfigError("task environments need uv; install it with: pip install uv (or run with --no-env)")
    return found


UV_TIMEOUT_SECONDS = 1800


def _uv(args, cwd, version, report):
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", NO_COLOR="1", UV_NO_PROGRESS="1")
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    process = subprocess.Popen(
        [uv_binary(), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    )
    lines, deadline, failing = [], time.monotonic() + UV_TIMEOUT_SECONDS, False
    try:
        for line in process.stdout:
            line = line.rstrip()
            lines.append(line)
            # Once uv reports an error, the rest belongs in the error message, not in progress.
            failing = failing or line.strip().startswith(_ERROR_STARTS)
            if line.strip() and not failing and not line.startswith(_QUIET_LINES):
                report(InstallerOutput(line))
            if time.monotonic() > deadline:
                break
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
            lines.append(f"error: uv did not finish within {UV_TIMEOUT_SECONDS} s")
        process.stdout.close()
    if process.returncode != 0:
        raise RequirementsNotInstallable.from_args(version, lines)


def _offline_flag():
    """``["--offline"]`` when the index cannot be reached: uv then installs from its cache."""
    return ["--offline"] if wallaroo_pins.uv_offline()[0] else []


_ERROR_STARTS = ("error:", "×")
_QUIET_LINES = ("Using CPython", "Using Python", "Creating virtual environment", "Activate with")


def failure_reason(lines, limit=30):
    """The lines of uv's output that say why it failed, from its first error line on.

    A build backend's own output (uv shows it under ``[stderr]``) is cut to its last line,
    which names the exception; uv's ``cause:`` and ``hint:`` lines are kept.
    """
    lines = [line for line in lines if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.strip().startswith(_ERROR_STARTS)), None)
    if start is None:
        return lines[-limit:]
    kept, block, block_indent = [], None, 0
    for line in lines[start:]:
        indent = len(line) - len(line.lstrip())
        if block is not None and indent >= block_indent and not line.strip().startswith(("cause:", "hint:", "help:")):
            block.append(line.strip())
            continue
        if block is not None:
            kept.append(" " * block_indent + (block[-1] if block else ""))
            block = None
        if line.strip() in ("[stderr]", "[stdout]"):
            block, block_indent = [], indent
            kept.append(line.replace("[stderr]", "[stderr, last line]").replace("[stdout]", "[stdout, last line]"))
            continue
        kept.append(line)
    if block:
        kept.append(" " * block_indent + block[-1])
    return kept[:limit]


# -- what the task sees besides the environment ---------------------------------------------

def task_python_path(cache_dir):
    """Directories for the task's ``PYTHONPATH``: the wallaroo stand-in, then a copy of the shim.

    A zip built by orchzip vendors its own shim, which comes first (the zip's root leads the
    path); a zip written for Wallaroo by others finds the stand-in's shim here.
    """
    return [STANDIN_DIR, _shim_copy(cache_dir)]


def _shim_files():
    import orchzip_shim
    root = os.path.dirname(os.path.abspath(orchzip_shim.__file__))
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".typed")):
                path = os.path.join(folder, name)
                found.append((os.path.relpath(path, root), path))
    return found


def _shim_copy(cache_dir):
    """A directory holding ``orchzip_shim/`` as installed now, content-addressed, made once."""
    files = _shim_files()
    digest = hashlib.sha256()
    for rel, path in files:
        digest.update(rel.encode("utf-8") + b"\0")
        with open(path, "rb") as fh:
            digest.update(fh.read() + b"\0")
    target = os.path.join(os.path.abspath(cache_dir), "shim-" + digest.hexdigest()[:20])
    if os.path.isdir(target):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".shim.", dir=cache_dir)
    for rel, path in files:
        dest = os.path.join(tmp, "orchzip_shim", rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(path, dest)
    try:
        os.rename(tmp, target)
    except OSError:  # another run made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# -- for the runner -------------------------------------------------------------------------

def find_requirements(work_dir):
    """The zip's requirements.txt: at its root, else the first one in a subfolder (or None)."""
    from orchzip.runtime.runner import find_first  # runner imports this module lazily: no cycle
    return find_first(work_dir, "requirements.txt")


def task_interpreter(work_dir, python=None, no_env=False, cache_dir=None, on_progress=None, wallaroo_version=None):
    """``(python, python_path, note)`` for a task whose zip is unpacked in ``work_dir``.

    With ``no_env`` (or an explicit ``python``) the task runs in that interpreter (default:
    orchzip's own) with the stand-in on its path; otherwise in the cached environment of the
    zip's requirements.txt under the pins of wallaroo ``wallaroo_version``. ``note`` is one
    line for the run's log saying which Python ran it.
    """
    if no_env or python:
        python = python or sys.executable
        why = "--no-env" if no_env else "given"
        return python, [STANDIN_DIR], f"orchzip: task python {python} ({why})"
    cache_dir = cache_dir or default_cache_dir()
    requirements = find_requirements(work_dir)
    text = ""
    if requirements:
        with open(requirements, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    env = ensure_environment(cache_dir, text, on_progress=on_progress,
                             requirements_dir=os.path.dirname(requirements) if requirements else None,
                             wallaroo_version=wallaroo_version)
    how = f"built in {env.seconds:.1f} s" if env.built else "cached"
    note = (f"orchzip: task python {env.python} (Python {env.python_version}, wallaroo "
            f"{env.wallaroo_version}'s pins, environment {os.path.basename(env.path)}, {how})")
    return env.python, task_python_path(cache_dir), note


# -- resolving without installing -----------------------------------------------------------

def resolve(requirement_lines, wallaroo_version=None, cache_dir=None, python=None, with_sdk=False):
    """``{package: version}`` a task environment would hold, resolved by uv without installing.

    :param requirement_lines: the zip's requirements, one requirement each.
    :param with_sdk: resolve beside ``wallaroo==<version>`` itself, as Wallaroo's image holds
        it with everything it depends on, instead of the local recipe (image packages under
        the SDK's pins).
    :raises RequirementsNotInstallable: uv found no solution; the message holds its reason.
    """
    cache_dir = cache_dir or default_cache_dir()
    python, version, _why = _interpreter(python)
    wallaroo_version = resolve_version(wallaroo_version)
    pins = wallaroo_pins.sdk_pins(cache_dir, wallaroo_version, python, uv_binary())
    lines = [line for line in requirement_lines if not _SDK_LINE.match(line.strip())]
    with tempfile.TemporaryDirectory(prefix="orchzip-resolve-") as tmp:
        constraints = os.path.join(tmp, "wallaroo-constraints.txt")
        with open(constraints, "w", encoding="utf-8") as fh:
            fh.write(pins.constraints_text())
        wanted = [f"wallaroo=={wallaroo_version}"] if with_sdk else list(IMAGE_PACKAGES)
        args = ["pip", "compile", "--python", python, "--no-header", "--no-annotate", "--quiet",
                "-c", constraints, *_offline_flag(), "-"]
        done = wallaroo_pins.run_uv(uv_binary(), args, input_text="\n".join(wanted + lines) + "\n", cwd=tmp)
    if done.returncode != 0:
        raise RequirementsNotInstallable.from_args(version, done.stdout.splitlines())
    versions = {}
    for line in done.stdout.splitlines():
        name, sep, pinned = line.strip().partition("==")
        if sep and not line.startswith("#"):
            versions[name.strip()] = pinned.split(";")[0].strip()
    return versions
