"""Which files of an orchestration folder go into its zip.

Everything under the folder, in a stable order, except junk no task needs (bytecode, VCS
folders, virtual environments, editor and OS files) and what ``.orchzipignore`` (gitignore
syntax, matched by ``pathspec``) excludes.
"""

import os

import pathspec

IGNORE_FILE = ".orchzipignore"
JUNK_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".idea", ".vscode",
             ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints", ".tox", "node_modules"}
JUNK_FILES = {".DS_Store", "Thumbs.db", "desktop.ini", IGNORE_FILE}
JUNK_SUFFIXES = (".pyc", ".pyo", ".swp", ".swo", "~", ".orig", ".rej")


def _is_virtualenv(path):
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def _ignore_spec(folder):
    path = os.path.join(folder, IGNORE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return pathspec.GitIgnoreSpec.from_lines(fh)


def collect(folder):
    """``[(archive name, path on disk)]`` of the folder's files, sorted by archive name.

    Symbolic links to files are followed (their content ships); links to folders are not.
    """
    folder = os.path.abspath(folder)
    spec = _ignore_spec(folder)
    found = []
    for root, dirs, files in os.walk(folder):
        rel_root = os.path.relpath(root, folder)
        kept = []
        for d in dirs:
            full = os.path.join(root, d)
            rel = d if rel_root == "." else f"{rel_root}/{d}"
            if d in JUNK_DIRS or os.path.islink(full) or _is_virtualenv(full):
                continue
            if spec is not None and spec.match_file(rel + "/"):
                continue
            kept.append(d)
        dirs[:] = sorted(kept)  # os.walk order depends on the file system: sort it
        for name in files:
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            if name in JUNK_FILES or name.endswith(JUNK_SUFFIXES) or name.startswith("._"):
                continue
            if spec is not None and spec.match_file(rel):
                continue
            full = os.path.join(root, name)
            if os.path.isfile(full):
                found.append((rel.replace(os.sep, "/"), full))
    return sorted(found)
