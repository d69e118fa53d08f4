"""Where the MLOps API client finds the instance and its credentials: flags, then environment.

Secrets are kept on the object but never shown: ``repr`` and :meth:`Settings.describe`
say where a token or password came from, never its value.
"""

import os

from ._mlops_errors import MissingCredentials, sanitize_url

DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5
ENV = {"url": "WALLAROO_URL", "token": "WALLAROO_TOKEN", "user": "WALLAROO_USER", "password": "WALLAROO_PASSWORD"}


class Settings:
    """The instance URL, credentials and retry policy of an MLOps API client.

    Each value comes from its keyword (a command-line flag), else from the environment
    (``WALLAROO_URL``, ``WALLAROO_TOKEN``, ``WALLAROO_USER``, ``WALLAROO_PASSWORD``). Given
    ``token`` or ``user`` explicitly, the environment's credentials are not used.

    :param url: the instance, e.g. ``https://wallaroo.example.com`` or ``http://127.0.0.1:8080``.
    :param token: a bearer token.
    :param user: a user name, exchanged with ``password`` for a token at the instance's Keycloak.
    :param timeout: seconds per HTTP request.
    :param retries: how often a 5xx or a failed connection is retried (with backoff).
    """

    def __init__(self, *, url=None, token=None, user=None, password=None, timeout=DEFAULT_TIMEOUT,
                 retries=DEFAULT_RETRIES, backoff=DEFAULT_BACKOFF, environ=None):
        env = os.environ if environ is None else environ
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
        """Raise :class:`MissingCredentials` unless a URL and usable credentials are set."""
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

    @staticmethod
    def register_argparse_arguments(parser):
        group = parser.add_argument_group("Wallaroo instance")
        group.add_argument("--url", help="the instance's URL (default: $WALLAROO_URL)")
        group.add_argument("--token", help="a bearer token (default: $WALLAROO_TOKEN)")
        group.add_argument("--user", help="a user to log in as at the instance's Keycloak (default: $WALLAROO_USER)")
        group.add_argument("--password", help="that user's password (default: $WALLAROO_PASSWORD; "
                           "asked for when missing on a terminal)")
        group.add_argument("--http-timeout", type=float, default=DEFAULT_TIMEOUT,
                           help=f"seconds per HTTP request (default {DEFAULT_TIMEOUT:g})")
        group.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                           help=f"retries of 5xx answers and failed connections (default {DEFAULT_RETRIES})")

    @classmethod
    def from_argparse(cls, args, password=None):
        return cls(url=args.url, token=args.token, user=args.user, password=password or args.password,
                   timeout=args.http_timeout, retries=max(0, args.retries))

    def create_client(self, **kwargs):
        from .mlops_client import Client
        return Client(self, **kwargs)


def _pick(value, flag, env, key):
    if value:
        return value, flag
    found = env.get(ENV[key])
    return (found, ENV[key]) if found else (None, None)
