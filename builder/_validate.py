"""Checks an orchestration folder must pass before its zip is written.

Every problem is one line naming the file (and the line, where there is one). Errors stop
the build; warnings are returned, and ``strict`` turns them into errors.
"""

import ast
import warnings as _warnings

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ._secrets import find_secrets

TASK_PYTHON = (3, 10)  # Wallaroo's task image runs Python 3.10
# Packages the task image provides; a second copy in requirements.txt breaks the SDK.
IMAGE_PACKAGES = {"wallaroo"}
ALLOWED_OPTIONS = ("--index-url", "--extra-index-url", "-i", "--find-links", "-f", "--only-binary", "--no-binary", "--pre", "--prefer-binary")


def check_python(name, source):
    """An error line if ``source`` does not parse under Python 3.10's grammar."""
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", SyntaxWarning)
            ast.parse(source, filename=name, feature_version=TASK_PYTHON)
    except SyntaxError as err:
        where = f"{name}:{err.lineno}" if err.lineno else name
        return f"{where}: does not parse as Python 3.10 (Wallaroo's task Python): {err.msg}"
    except ValueError:  # null bytes (a SyntaxError from Python 3.12 on)
        return f"{name}: does not parse as Python 3.10: it holds null bytes (is it a binary file?)"
    return None


def read_text(name, path, read):
    """``(text, None)``, or ``(None, problem)`` when the file is not UTF-8 (a UTF-8 BOM is fine, as for pip)."""
    try:
        return read(path), None
    except UnicodeDecodeError:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            return None, f"{name}: is UTF-16 text (as PowerShell writes it); save it as UTF-8"
        return None, f"{name}: is not UTF-8 text; save it as UTF-8"


def check_requirements(name, text):
    """``(errors, warnings, requirements)`` of a pip requirements file."""
    errors, warnings, found = [], [], {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        where = f"{name}:{number}"
        if line.startswith("-"):
            if not line.startswith(ALLOWED_OPTIONS):
                errors.append(f"{where}: option {line.split()[0]!r} is not allowed in an orchestration's "
                              f"requirements (the task installs from an index, not from local paths or other files)")
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as err:
            errors.append(f"{where}: not a valid requirement {line!r}: {err}")
            continue
        key = canonicalize_name(req.name)
        if key in IMAGE_PACKAGES:
            errors.append(f"{where}: remove {req.name!r}: Wallaroo's task image already has the SDK, "
                          f"and a second copy breaks it")
            continue
        if req.url:
            errors.append(f"{where}: {req.name} comes from a URL; Wallaroo installs from a package index")
            continue
        if key in found:
            previous_line, previous = found[key]
            kind = "conflicts with" if str(previous.specifier) != str(req.specifier) else "repeats"
            errors.append(f"{where}: {req.name} {kind} line {previous_line} ({previous}); list each package once")
            continue
        found[key] = (number, req)
        if not any(spec.operator in ("==", "===") for spec in req.specifier):
            warnings.append(f"{where}: {req.name} is not pinned (use ==): the task may get another version each time")
    return errors, warnings, [str(req) for _, req in found.values()]


def validate(files, read, allowed_secrets=()):
    """Check the collected ``files``; returns ``(errors, warnings, requirements)``.

    :param files: ``[(archive name, path)]`` from :func:`collect`.
    :param read: reads a path as text (raising UnicodeDecodeError when it is not UTF-8).
    :param allowed_secrets: names of credential files the user allows to ship.
    """
    errors, warnings, requirements = [], [], []
    names = [name for name, _ in files]
    if "main.py" not in names and not any(n.endswith("/main.py") for n in names):
        errors.append("main.py: missing; an orchestration needs main.py at its root (Wallaroo's entry point)")
    requirement_files = [n for n in names if n == "requirements.txt" or n.endswith("/requirements.txt")]
    if len(requirement_files) > 1:
        errors.append(f"{', '.join(requirement_files)}: Wallaroo allows at most one requirements.txt")
    for name, path in files:
        if name.endswith(".py"):
            text, problem = read_text(name, path, read)
            problem = problem or check_python(name, text)
            if problem:
                errors.append(problem)
        elif name in requirement_files:
            text, problem = read_text(name, path, read)
            if problem:
                errors.append(problem)
                continue
            req_errors, req_warnings, requirements = check_requirements(name, text)
            errors += req_errors
            warnings += req_warnings
    for name, reason in find_secrets(files, allowed_secrets):
        errors.append(f"{name}: refused, {reason}; remove it, list it in .orchzipignore, "
                      f"or ship it anyway with --allow-secret {name}")
    return errors, warnings, requirements
