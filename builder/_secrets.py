"""Files that hold credentials and must never ship inside a zip."""

import fnmatch
import json
import os
import re

NAME_RULES = [
    (".env", "an environment file (.env) usually holds secrets"),
    (".env.*", "an environment file (.env.*) usually holds secrets"),
    ("*.p12", "a PKCS#12 key store"),
    ("*.pfx", "a PKCS#12 key store"),
    ("*.pem", None),  # decided by content: certificates are fine, private keys are not
    ("*.key", None),
    ("id_rsa*", "an SSH private key"),
    ("id_dsa*", "an SSH private key"),
    ("id_ecdsa*", "an SSH private key"),
    ("id_ed25519*", "an SSH private key"),
    (".netrc", "a .netrc holds passwords"),
    (".pypirc", "a .pypirc holds package index passwords"),
    ("token.json", "a token file"),
    ("*.token", "a token file"),
    ("token", "a token file"),
    (".git-credentials", "a git credentials file"),
]
PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----")
SCAN_BYTES = 1 << 20  # a key is near the top of a file; large data files are not keys


def secret_reason(name, path):
    """Why the file at ``path`` (archive name ``name``) looks like a credential, or None."""
    base = os.path.basename(name)
    for pattern, reason in NAME_RULES:
        if reason and fnmatch.fnmatchcase(base, pattern):
            if base.endswith((".pub",)):
                continue  # public halves of SSH keys are not secrets
            return reason
    try:
        with open(path, "rb") as fh:
            head = fh.read(SCAN_BYTES)
    except OSError:
        return None
    if base.endswith(".json") and b"private_key" in head:
        try:
            data = json.loads(head.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("private_key"):
            kind = "a Google service-account key" if data.get("type") == "service_account" else "a JSON file with a private_key"
            return f"it is {kind}"
    if PEM_PRIVATE_KEY.search(head):
        return "it holds a PEM private key"
    return None


def find_secrets(files, allowed=()):
    """``[(name, reason)]`` for each credential file in ``files`` not named in ``allowed``."""
    allowed = {os.path.normpath(a).replace(os.sep, "/") for a in allowed}
    found = []
    for name, path in files:
        if name in allowed or os.path.basename(name) in allowed:
            continue
        reason = secret_reason(name, path)
        if reason:
            found.append((name, reason))
    return found
