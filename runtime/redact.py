"""Hide the secrets users put into connection details before they are shown.

One function, :func:`mask_details`, decides what ``connections list|get`` (local and remote)
may print. A value is hidden when its key names a secret anywhere in the tree (``password``,
``pwd``, ``passwd``, ``auth``, ``Authorization``, ``X-Api-Key``, ``key``, ``token``, ``secret``,
``credential``, ``private_key`` ... in any case or spelling: ``apiKey``, ``client_secret``),
and any other string loses the passwords it carries: ``user:pass@`` in URLs, ``password=...``
in DSNs and query strings, the credential after ``Bearer``/``Basic``. ``${VAR}`` references
stay visible: they are names, not values.
"""

import re

__all__ = ["MASK", "mask_details", "mask_text", "is_secret_key"]

MASK = "****"
MAX_SHOWN_DEPTH = 64
# Words that make a key secret when they are one of its parts (split at _, -, . and camelCase).
_SECRET_PARTS = {"pwd", "passwd", "password", "pass", "passphrase", "auth", "authorization", "key", "apikey",
                 "token", "secret", "secrets", "credential", "credentials", "cookie", "private", "signature", "sig"}
# ... or that appear anywhere in it (``accesstoken``, ``dbpassword``).
_SECRET_INFIXES = ("password", "passwd", "secret", "token", "apikey", "privatekey", "credential", "passphrase")
# Keys whose values are addresses, not secrets (``token_uri`` of a service-account key); their
# text is still masked like any other string.
_ADDRESS_PARTS = {"uri", "url", "endpoint", "type"}
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_ENV_ONLY = re.compile(r"^(?:[A-Za-z]+\s+)?\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s/]+)(@)")
_PAIR = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|pass|secret|client_secret|token|access_token|refresh_token|api[_-]?key|apikey"
    r"|key|auth|sig|signature)\s*[=:]\s*)(?!//)(\"[^\"]*\"|'[^']*'|[^\s;&,\"'}]+)")
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(Bearer|Basic|Token|Digest)(\s+)([A-Za-z0-9._~+/=-]{4,})")


def is_secret_key(key):
    """True when a details key names a secret (``X-Api-Key``, ``db_password``, ``auth``...)."""
    parts = [p.lower() for p in _WORD.findall(str(key))]
    if parts and parts[-1] in _ADDRESS_PARTS:
        return False
    joined = "".join(parts)
    return any(p in _SECRET_PARTS for p in parts) or any(w in joined for w in _SECRET_INFIXES)


def mask_text(text):
    """``text`` with passwords in URLs and DSNs and credentials after ``Bearer`` hidden."""
    if _ENV_ONLY.match(text):
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + _masked(m.group(2)) + m.group(3), text)
    text = _PAIR.sub(lambda m: m.group(1) + _masked(m.group(2)), text)
    return _SCHEME_CREDENTIAL.sub(lambda m: m.group(1) + m.group(2) + _masked(m.group(3)), text)


def _masked(value):
    return value if _ENV_ONLY.match(value.strip("\"'")) else MASK


def mask_details(value, secret=False, _depth=0):
    """``value`` (details: dicts, lists, scalars) with every secret replaced by ``****``.

    :param secret: everything inside is secret (the value of a secret key).
    Whatever nests deeper than :data:`MAX_SHOWN_DEPTH` is shown as ``****`` (details from a
    remote instance are not bounded by our own checks, and recursion is).
    """
    if isinstance(value, (dict, list)) and _depth >= MAX_SHOWN_DEPTH:
        return MASK
    if isinstance(value, dict):
        return {k: mask_details(v, secret or is_secret_key(k), _depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_details(v, secret, _depth + 1) for v in value]
    if isinstance(value, str):
        if secret:
            return value if (not value or _ENV_ONLY.match(value)) else MASK
        return mask_text(value)
    if secret and isinstance(value, (int, float)) and not isinstance(value, bool):
        return MASK
    return value
