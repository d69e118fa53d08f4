"""`orchzip init`: a starter project that runs as it is.

The files come from ``starter/`` beside this module (package data): an orchestration folder,
a small linear ONNX model (``starter/make_model.py`` makes it), a CSV of houses, and the
``orchzip.yaml`` that ties them together, so that ``orchzip apply && orchzip run predict``
works in the new folder.
"""

import os
import shutil

from orchzip.errors import ConfigError

__all__ = ["write_starter", "STARTER_TASK"]

STARTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "starter")
STARTER_TASK = "predict"
# starter file -> where it goes in the new project
FILES = {
    "project.yaml": "orchzip.yaml",
    "main.py": "orchestrations/predict/main.py",
    "requirements.txt": "orchestrations/predict/requirements.txt",
    "model.onnx": "model/model.onnx",
    "houses.csv": "data/houses.csv",
    "gitignore": ".gitignore",
}


def write_starter(folder):
    """Write the starter project into ``folder`` (created if missing); returns the paths written.

    :raises ConfigError: when any of the files exists already; nothing is written then.
    """
    folder = os.path.abspath(folder)
    targets = {source: os.path.join(folder, target) for source, target in FILES.items()}
    present = [os.path.relpath(t, folder) for t in targets.values() if os.path.exists(t)]
    if present:
        raise ConfigError(f"{folder} already has {', '.join(present)}; orchzip init writes a new project: "
                          "give an empty or new folder (orchzip init FOLDER)")
    for source, target in targets.items():
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(STARTER, source), target)
    os.makedirs(os.path.join(folder, "data"), exist_ok=True)
    return sorted(targets.values())
