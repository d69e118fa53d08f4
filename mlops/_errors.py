"""Errors of the MLOps API client: one line each, saying what failed and what to check.

No message ever holds a token or a password: server messages are scrubbed of the
credentials in use, and URLs lose any user info and query.
"""

import urllib.parse

from orchzip.errors import OrchzipError, TerminalError, TransientError

MAX_SERVER_MESSAGE = 300
CREDENTIALS_HINT = "check your credentials (--token / WALLAROO_TOKEN, or --user / WALLAROO_USER and WALLAROO_PASSWORD)"


def sanitize_url(url):
    """``url`` without user info, query or fragment (they may hold secrets)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def scrub(text, secrets=()):
    """``text`` on one line, shortened, with every secret replaced by ``<hidden>``."""
    text = " ".join(str(text).split())
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<hidden>")
    if len(text) > MAX_SERVER_MESSAGE:
        text = text[:MAX_SERVER_MESSAGE] + "..."
    return text


class MLOpsError(OrchzipError):
    """A call to a Wallaroo instance's MLOps API failed."""

    exit_code = 1


class MissingCredentials(MLOpsError, TerminalError):
    pass


class InvalidCredentials(MLOpsError, TerminalError):
    """A token, password, user or URL that cannot be sent as given (a line break inside, ...)."""

    exit_code = 2


class AuthenticationFailed(MLOpsError, TerminalError):
    """401/403: the token or the user and password were refused."""


class NotFoundOnInstance(MLOpsError, TerminalError):
    """404: a wrong URL, or an id the instance does not know."""


class NameTaken(MLOpsError, TerminalError):
    """409: a connection, workspace or other name exists already (or a state conflict)."""


class RequestRefused(MLOpsError, TerminalError):
    """Any other 4xx: the request itself is wrong."""


class InstanceUnavailable(MLOpsError, TransientError):
    """5xx or no connection, after the bounded retries."""


class OperationFailed(MLOpsError, TerminalError):
    """What was asked ran and failed: packaging ended in ``error``, a task failed."""


def error_for_status(what, status, server_msg, url, hint=""):
    """The error for an HTTP ``status`` answering ``what`` (e.g. "POST /v1/api/task/run_once")."""
    said = f" (the instance says: {server_msg})" if server_msg else ""
    where = sanitize_url(url)
    if status in (401, 403):
        return AuthenticationFailed(f"{what}: {status} {'Unauthorized' if status == 401 else 'Forbidden'} "
                                    f"from {where}{said}; {CREDENTIALS_HINT}")
    if status == 404:
        check = hint or "the id"
        return NotFoundOnInstance(f"{what}: 404 Not Found{said}; check the URL (--url / WALLAROO_URL = {where}) "
                                  f"and {check}")
    if status == 409:
        return NameTaken(f"{what}: 409 Conflict{said}; the name is taken (or the object is not in a state "
                         f"that allows this): pick another name or look at the existing one")
    if status == 413:
        return RequestRefused(f"{what}: 413 Payload Too Large{said}; make the zip smaller (.orchzipignore)")
    if 400 <= status < 500:
        return RequestRefused(f"{what}: {status}{said}; check the values given")
    return InstanceUnavailable(f"{what}: {status} from {where}{said}; the instance is failing, try again later")
