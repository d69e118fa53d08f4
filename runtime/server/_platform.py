"""``GET /v1/api/config``: the platform settings a wallaroo ``Client()`` reads when it starts.

The SDK fetches it before it has a token (no Authorization header), so it is the one path
served without one; it holds nothing secret. ``default_arch`` is the architecture models are
uploaded and deployed for when none is named: this machine's, in Wallaroo's words.
"""

import platform

from starlette.responses import JSONResponse
from starlette.routing import Route

CONFIG_PATH = "/v1/api/config"
OPEN_PATHS = frozenset({CONFIG_PATH})
_ARCHES = {"x86_64": "x86", "amd64": "x86", "i686": "x86", "aarch64": "arm", "arm64": "arm", "ppc64le": "power10"}


def default_arch(machine=None):
    """Wallaroo's name (``x86``, ``arm``, ``power10``) for ``machine`` (default: this one's)."""
    return _ARCHES.get((machine or platform.machine()).lower(), "x86")


async def config(request):
    return JSONResponse({"default_arch": default_arch()})


def routes():
    return [Route(CONFIG_PATH, config, methods=["GET"])]


__all__ = ["routes", "default_arch", "OPEN_PATHS"]
