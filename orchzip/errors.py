"""orchzip's errors. The root classes live in the shim (it ships alone inside zips)."""

from orchzip_shim.errors import *  # noqa: F401,F403
from orchzip_shim.errors import __all__  # noqa: F401
