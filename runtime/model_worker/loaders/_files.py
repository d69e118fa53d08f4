"""Where a model's Python files are: a single .py, a folder, or a .zip of either.

As Wallaroo does, the modules are the ``*.py`` files at the top of the model's folder, each
imported from its path. A .zip is unpacked into a temporary folder that lives as long as the
worker.
"""

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile

from . import ModelLoadError

__all__ = ["model_folder", "python_files", "import_file"]


def model_folder(path):
    """``(folder, files)``: the folder the model lives in and its top-level .py files, sorted."""
    if os.path.isfile(path) and zipfile.is_zipfile(path):
        folder = _unpack(path)
        return folder, python_files(folder)
    if os.path.isdir(path):
        return path, python_files(path)
    if os.path.isfile(path) and path.endswith(".py"):
        return os.path.dirname(os.path.abspath(path)), [path]
    raise ModelLoadError(f"{path} is neither a .py file, a folder nor a .zip")


def python_files(folder):
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.endswith(".py") and os.path.isfile(os.path.join(folder, name)))


def _unpack(path):
    target = tempfile.mkdtemp(prefix="orchzip-model-")
    atexit.register(shutil.rmtree, target, True)
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            dest = os.path.realpath(os.path.join(target, member.filename))
            if not dest.startswith(os.path.realpath(target) + os.sep) and dest != os.path.realpath(target):
                raise ModelLoadError(f"{path} holds {member.filename!r}, which points outside the archive")
        archive.extractall(target)
    entries = [e for e in os.listdir(target) if not e.startswith(("__MACOSX", "."))]
    # A zip of a folder (model/forecast.py) is that folder, as a zip of the files themselves.
    if len(entries) == 1 and os.path.isdir(os.path.join(target, entries[0])):
        return os.path.join(target, entries[0])
    return target


def import_file(path):
    """The module of ``path``, imported under its file name (registered so that pickles and
    dataclasses defined in it work)."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
