"""Entry point: ``python /path/to/model_worker`` (the folder itself).

Python puts this folder first on ``sys.path`` when it runs it; that would make ``loaders``,
``arrays`` ... importable as top-level names inside the model's code. Take it off and load the
folder as one private package instead.
"""

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    del sys.path[0]
_spec = importlib.util.spec_from_file_location(
    "_orchzip_model_worker", os.path.join(_HERE, "__init__.py"), submodule_search_locations=[_HERE])
_package = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _package
_spec.loader.exec_module(_package)

from _orchzip_model_worker.worker import main  # noqa: E402  (the package exists only now)

sys.exit(main())
