"""The server's bearer token: made at first start, kept owner-only in the state directory."""

import hmac
import os
import secrets

from orchzip.errors import ConfigError
from orchzip.runtime.server._http import error_response

TOKEN_FILE = "serve-token"


def token_path(state_dir):
    return os.path.join(state_dir, TOKEN_FILE)


def load_or_create_token(state_dir):
    """The token of the server on ``state_dir``; a new random one is written (0600) if none yet."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = token_path(state_dir)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        with open(path, "rb") as fh:
            raw = fh.read(4096).strip()  # a file edited on Windows ends in CR LF
        if raw and not all(33 <= b < 127 for b in raw):
            # Never echo it: it is the server's secret. One line, and how to get a good one.
            raise ConfigError(f"token file {path} holds a line break, space or non-ASCII character inside; "
                              f"write one line of ASCII into it, or delete it and orchzip serve makes a new one")
        if raw:
            return raw.decode("ascii")
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    return token


class BearerAuth:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``.

    :param open_paths: exact paths served without a token (what a client reads before it has one).
    """

    def __init__(self, app, token, open_paths=frozenset()):
        self.app = app
        self._expected = token.encode("ascii")
        self._open = open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (scope.get("path") in self._open and scope.get("method") in ("GET", "HEAD")):
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or ()).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            response = error_response(401, "missing bearer token: send the header 'Authorization: Bearer TOKEN' "
                                      "(the token: orchzip serve --show-token)",
                                      headers={"WWW-Authenticate": "Bearer"})
        elif not hmac.compare_digest(given.strip(), self._expected):
            response = error_response(401, "invalid bearer token (the current one: orchzip serve --show-token)",
                                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        else:
            return await self.app(scope, receive, send)
        await response(scope, receive, send)
