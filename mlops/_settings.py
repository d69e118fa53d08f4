"""Where the MLOps API client finds the instance and its credentials: flags, then environment.

Secrets are kept on the object but never shown: ``repr`` and :meth:`Settings.describe`
say where a token or password came from, never its value.
"""

import argparse
import json
import os

from ._errors import InvalidCredentials, MissingCredentials, sanitize_url

DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5
SDK_CREDENTIALS = "WALLAROO_SDK_CREDENTIALS"  # the wallaroo SDK's token file (JSON with "token")
MAX_CREDENTIALS_FILE = 1 << 16
ENV = {"url": "WALLAROO_URL", "token": "WALLAROO_TOKEN", "user": "WALLAROO_USER", "password": "WALLAROO_PASSWORD"}


class Settings:
    """The instance URL, credentials and retry policy of an MLOps API client.

    Each value comes from its keyword (a command-line flag), else from the environment
    (``WALLAROO_URL``, ``WALLAROO_TOKEN``, ``WALLAROO_USER``, ``WALLAROO_PASSWORD``). Given
    ``token`` or ``user`` explicitly, the environment's credentials are not used. With neither a
    token nor a user, the token comes from the wallaroo SDK's credentials file, named by
    ``WALLAROO_SDK_CREDENTIALS``.

    :param url: the instance, e.g. ``https://wallaroo.example.com`` or ``http://127.0.0.1:8080``.
    :param token: a bearer token.
    :param user: a user name, exchanged with ``password`` for a token at the instance's Keycloak.
    :param timeout: seconds per HTTP request.
    :param retries: how often a 5xx or a failed connection is retried (with backoff).
    """

    def __init__(self, *, url=None, token=None, user=None, password=None, timeout=DEFAULT_TIMEOUT,
                 retries=DEFAULT_RETRIES, backoff=DEFAULT_BACKOFF, environ=None):
        env = self.environ = os.environ if environ is None else environ
        self.url, self.url_source = _pick(url, "--url", env, "url")
        # A token or user given as a flag wins over any credentials in the environment;
        # the password of a --user may still come from WALLAROO_PASSWORD.
        if token or user:
            env = {k: v for k, v in env.items() if k == ENV["password"]}
        self.token, self.token_source = _pick(token, "--token", env, "token")
        self.user, self.user_source = (None, None) if self.token else _pick(user, "--user", env, "user")
        self.password, self.password_source = _pick(password, "--password", env, "password")
        self.url = (self.url or "").rstrip("/") or None
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def __repr__(self):
        return f"Settings({self.describe()})"

    def describe(self):
        """Where each value came from, secrets hidden: ``url=..., token=<hidden> (WALLAROO_TOKEN)``."""
        parts = [f"url={sanitize_url(self.url) if self.url else None}"]
        if self.token:
            parts.append(f"token=<hidden> ({self.token_source})")
        elif self.user:
            parts.append(f"user={self.user} ({self.user_source}), password="
                         f"{'<hidden> (' + self.password_source + ')' if self.password else 'missing'}")
        return ", ".join(parts)

    @property
    def secrets(self):
        return [s for s in (self.token, self.password) if s]

    def check(self):
        """Raise :class:`MissingCredentials` unless a URL and usable credentials are set.

        Values are cleaned first: whitespace around a token and a line break ending a password
        (a token file saved on Windows ends in CR LF) go; what is left must be one line.
        :raises InvalidCredentials: naming where the bad value came from, never the value.
        """
        self._clean()
        if not self.url:
            raise MissingCredentials("no Wallaroo instance given: pass --url URL or set WALLAROO_URL "
                                     "(for orchzip serve: http://127.0.0.1:8080)")
        if not self.url.startswith(("http://", "https://")):
            raise MissingCredentials(f"instance URL {sanitize_url(self.url)!r} must start with http:// or https://")
        if self.token:
            return
        if not self.user:
            raise MissingCredentials("no credentials: set WALLAROO_TOKEN (orchzip serve: "
                                     "WALLAROO_TOKEN=$(orchzip serve --show-token)), or WALLAROO_USER and "
                                     "WALLAROO_PASSWORD, or pass --token / --user")
        if not self.password:
            raise MissingCredentials(f"user {self.user} ({self.user_source}) has no password: set "
                                     "WALLAROO_PASSWORD or pass --password")

    def _clean(self):
        if self.url is not None:
            self.url = _one_line(self.url.strip(), "instance URL", self.url_source).rstrip("/") or None
        if self.token is None and self.user is None and self.environ.get(SDK_CREDENTIALS):
            self.token, self.token_source = read_sdk_credentials(self.environ[SDK_CREDENTIALS])
        if self.token is not None:
            self.token = _one_line(self.token.strip(), "token", self.token_source, ascii_only=True) or None
        if self.user is not None:
            self.user = _one_line(self.user.strip(), "user", self.user_source) or None
        if self.password is not None:
            self.password = _one_line(self.password.rstrip("\r\n"), "password", self.password_source) or None

    @staticmethod
    def register_argparse_arguments(parser, retries_alias=True, keep_given=False):
        """The instance's flags on ``parser``.

        :param retries_alias: also take ``--retries``, the old spelling of ``--http-retries``
            (hidden: elsewhere ``--retries`` means how often a failed task run is retried).
        :param keep_given: ``parser`` is a subcommand of a parser with these flags: one not
            given here leaves the value given before the subcommand as it is.
        """
        def default(value):
            return argparse.SUPPRESS if keep_given else value

        group = parser.add_argument_group("Wallaroo instance")
        group.add_argument("--url", default=default(None), help="the instance's URL (default: $WALLAROO_URL)")
        group.add_argument("--token", default=default(None), help="a bearer token (default: $WALLAROO_TOKEN, else "
                           "the \"token\" of the JSON file named by $WALLAROO_SDK_CREDENTIALS)")
        group.add_argument("--user", default=default(None),
                           help="a user to log in as at the instance's Keycloak (default: $WALLAROO_USER)")
        group.add_argument("--password", default=default(None), help="that user's password (default: "
                           "$WALLAROO_PASSWORD; asked for when missing on a terminal)")
        group.add_argument("--http-timeout", type=float, default=default(DEFAULT_TIMEOUT),
                           help=f"seconds per HTTP request (default {DEFAULT_TIMEOUT:g})")
        group.add_argument("--http-retries", type=int, default=default(DEFAULT_RETRIES),
                           help=f"retries of 5xx answers and failed connections (default {DEFAULT_RETRIES})")
        if retries_alias:
            group.add_argument("--retries", dest="http_retries", type=int, default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS)

    @classmethod
    def from_argparse(cls, args, password=None):
        return cls(url=args.url, token=args.token, user=args.user, password=password or args.password,
                   timeout=args.http_timeout, retries=max(0, args.http_retries))

    def create_client(self, **kwargs):
        from .client import Client  # one way: the client never imports the settings
        return Client(self, **kwargs)


def _one_line(value, what, source, ascii_only=False):
    """``value`` if it is one line of printable text (ASCII for a token), else InvalidCredentials."""
    bad = any(not c.isprintable() or (ascii_only and (not c.isascii() or c.isspace())) for c in value)
    if bad:
        kind = "a line break, space or non-ASCII character" if ascii_only else "a line break or control character"
        raise InvalidCredentials(f"the {what} from {source} holds {kind} inside; give it again as one "
                                 f"line (a file saved on Windows: convert it with dos2unix)")
    return value


def read_sdk_credentials(path):
    """``(token, source)`` from the wallaroo SDK's credentials file (JSON with a ``token``)."""
    source = f"{SDK_CREDENTIALS} file {path}"
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CREDENTIALS_FILE + 1)
    except FileNotFoundError:
        raise InvalidCredentials(f"{source}: no such file; unset {SDK_CREDENTIALS} or point it at the "
                                 f"credentials file the wallaroo SDK wrote") from None
    except OSError as err:
        raise InvalidCredentials(f"{source}: cannot read it ({err.strerror})") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    token = data.get("token") if isinstance(data, dict) else None
    if len(raw) > MAX_CREDENTIALS_FILE or not isinstance(token, str) or not token.strip():
        raise InvalidCredentials(f"{source}: not a JSON object with a \"token\" string, as the wallaroo SDK "
                                 f"writes it; log in again, or pass --token")
    return token, source


def _pick(value, flag, env, key):
    if value:
        return value, flag
    found = env.get(ENV[key])
    return (found, ENV[key]) if found else (None, None)
