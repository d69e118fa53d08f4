"""Which files of an orchestration folder go into its zip.

Everything under the folder, in a stable order, except junk no task needs (bytecode, VCS
folders, virtual environments, editor and OS files) and what ``.orchzipignore`` (gitignore
syntax, matched by ``pathspec``) excludes. What else is left out is reported, never dropped
silently: links to folders, broken links, sockets and other special files. A link to a file
ships that file's content when the file is inside the folder; a link that leads outside it
is refused (it would ship whatever it points at, ``/etc/passwd`` included).
"""

import os
import stat

from orchzip.errors import ConfigError

IGNORE_FILE = ".orchzipignore"
JUNK_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".idea", ".vscode",
             ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints", ".tox", "node_modules"}
JUNK_FILES = {".DS_Store", "Thumbs.db", "desktop.ini", IGNORE_FILE}
JUNK_SUFFIXES = (".pyc", ".pyo", ".swp", ".swo", "~", ".orig", ".rej")


class Collected:
    """What a folder gives: ``files`` ``[(archive name, path)]`` sorted, and what was not taken.

    ``dropped`` ``[(name, why)]`` are left out (reported as warnings); ``refused``
    ``[(name, why)]`` stop the build.
    """

    def __init__(self, files, dropped, refused):
        self.files, self.dropped, self.refused = files, dropped, refused


def shown(name):
    """``name`` fit for a one-line message: undecodable bytes and control characters escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if text.isprintable() else repr(text)[1:-1]


def _is_virtualenv(path):
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def _ignore_spec(folder):
    path = os.path.join(folder, IGNORE_FILE)
    if not os.path.isfile(path):
        return None
    import pathspec  # only for a folder that has an ignore file

    try:
        with open(path, encoding="utf-8-sig") as fh:
            return pathspec.GitIgnoreSpec.from_lines(fh.read().splitlines())
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text; save it as UTF-8") from None
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: not a valid gitignore pattern file ({str(err).splitlines()[0]})") from None


def _inside(folder, path):
    real = os.path.realpath(path)
    return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)


def _undecodable(name):
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def collect(folder):
    """The folder's files as a :class:`Collected`."""
    folder = os.path.realpath(folder)
    spec = _ignore_spec(folder)
    found, dropped, refused = [], [], []
    def unreadable(err):
        dropped.append((shown(os.path.relpath(err.filename, folder)) + "/", f"cannot list it ({err.strerror})"))

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        rel_root = os.path.relpath(root, folder)
        kept = []
        for d in dirs:
            full = os.path.join(root, d)
            rel = d if rel_root == "." else f"{rel_root}/{d}"
            if d in JUNK_DIRS or _is_virtualenv(full) or (spec is not None and spec.match_file(rel + "/")):
                continue
            if os.path.islink(full):
                dropped.append((rel + "/", "a link to a folder; links to folders are not followed (copy it in)"))
                continue
            kept.append(d)
        dirs[:] = sorted(kept)  # os.walk order depends on the file system: sort it
        for name in files:
            rel = (name if rel_root == "." else f"{rel_root}/{name}").replace(os.sep, "/")
            if name in JUNK_FILES or name.endswith(JUNK_SUFFIXES) or name.startswith("._"):
                continue
            if spec is not None and spec.match_file(rel):
                continue
            _take(folder, rel, os.path.join(root, name), found, dropped, refused)
    return Collected(sorted(found), sorted(dropped), sorted(refused))


def _take(folder, rel, full, found, dropped, refused):
    if _undecodable(rel):
        refused.append((shown(rel), "the name is not UTF-8; rename it (zip entry names are UTF-8)"))
        return
    if os.path.islink(full):
        if not os.path.exists(full):
            dropped.append((rel, "a broken link"))
            return
        if not _inside(folder, full):
            refused.append((rel, "a link to a file outside the folder; copy the file in, or remove the link"))
            return
    try:
        mode = os.stat(full).st_mode
    except OSError as err:
        dropped.append((rel, f"cannot read it ({err.strerror})"))
        return
    if not stat.S_ISREG(mode):
        dropped.append((rel, "not a regular file (a socket, pipe or device)"))
        return
    if not os.access(full, os.R_OK):
        refused.append((rel, "not readable; fix its permissions or list it in .orchzipignore"))
        return
    found.append((rel, full))
