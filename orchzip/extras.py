"""Which extra of ``pip install orchzip[...]`` provides what a command needs.

The core install builds, inspects and ships zips (build, inspect, upload, remote, init, apply
--remote, completion); local runs, ``orchzip serve`` and BigQuery connections need extras
(setup.cfg ``extras_require``). A command that reaches for a package its extra would have
installed fails with one line naming that extra, not a traceback.
"""

__all__ = ["EXTRA_OF", "missing_extra_message"]

# The top-level module -> the extra that installs it.
EXTRA_OF = {
    "pyarrow": "run", "pandas": "run", "numpy": "run", "duckdb": "run", "onnxruntime": "run", "tqdm": "run",
    "psutil": "run",
    "starlette": "serve", "uvicorn": "serve", "multipart": "serve", "python_multipart": "serve",
    "graphql": "serve", "jinja2": "serve",
    "google": "bigquery",
}


def missing_extra_message(err, command):
    """The one line for ``err`` (a ModuleNotFoundError) in ``orchzip COMMAND``, or None when the
    missing module is none an extra provides (a bug to show as it is)."""
    module = (getattr(err, "name", None) or "").split(".")[0]
    extra = EXTRA_OF.get(module)
    if extra is None:
        return None
    return (f"orchzip {command} needs the '{extra}' extra ({module} is not installed): "
            f"pip install 'orchzip[{extra}]' (in a clone of the repository: pip install -e '.[{extra}]')")
