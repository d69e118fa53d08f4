"""The check at the door, for a model a task uploads (``wl.upload_model`` in the stand-in).

A task's process has the shim and the wallaroo stand-in but not orchzip, whose
``model_frameworks.check_upload`` builds a model's environment and loads the model once. The
stand-in runs this module with orchzip's own Python (the task context names it)::

    <orchzip python> -m orchzip.runtime.model_check  < {"name", "framework", "path", "input_schema", ...}

and reads the spec's fields as JSON on stdout; a refusal is one line on stderr and exit code 2.
The model stays where the task has it: what a task uploads lives in its process, as on Wallaroo
it lives in the task's own upload.
"""

import json
import sys

from orchzip.errors import OrchzipError


def main():
    request = json.load(sys.stdin)
    from orchzip.runtime.model_frameworks import check_upload
    try:
        fields = check_upload(request["name"], request["framework"], request["path"],
                              input_schema=request.get("input_schema"), output_schema=request.get("output_schema"),
                              requirements=request.get("requirements"),
                              on_progress=lambda line: print(f"orchzip: {line}", file=sys.stderr, flush=True))
    except OrchzipError as err:
        print(str(err).splitlines()[0] if str(err) else type(err).__name__, file=sys.stderr)
        return 2
    json.dump(fields, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
