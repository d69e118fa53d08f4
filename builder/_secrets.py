"""Files that hold credentials and must never ship inside a zip.

Two kinds of check. By name: files that exist to hold secrets (``.env``, SSH keys,
``.netrc``, ``.aws/credentials`` ...). By content: detect-secrets (Yelp's scanner, the
well-kept list of token formats: AWS keys, GitHub/GitLab/npm/PyPI/Slack/Stripe tokens,
``.npmrc`` auth tokens, JWTs, PEM private keys, passwords in URLs ...) plus the Google key
formats of ``_secret_patterns``, and a Google service-account key in JSON. Its entropy and
keyword guesses are left out: they fire on hashes and on ``password = os.environ[...]``.
Reasons name the kind of secret and the line, never the secret.
"""

import fnmatch
import json
import os
import re
import threading

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
# Rules on the path inside the folder, for files whose name alone says nothing.
PATH_RULES = [
    ("*.aws/credentials", "an AWS credentials file"),
    ("*.docker/config.json", None),  # decided by content (detect-secrets sees auths)
    ("*.kube/config", "a Kubernetes config (cluster credentials)"),
]
PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----")
SCAN_BYTES = 1 << 20  # credential files are small; larger files get the PEM check on their head only
DETECTORS = [
    "AWSKeyDetector", "ArtifactoryDetector", "AzureStorageKeyDetector", "BasicAuthDetector", "CloudantDetector",
    "DiscordBotTokenDetector", "GitHubTokenDetector", "GitLabTokenDetector", "IbmCosHmacDetector",
    "JwtTokenDetector", "MailchimpDetector", "NpmDetector", "OpenAIDetector", "PrivateKeyDetector",
    "PypiTokenDetector", "SendGridDetector", "SlackDetector", "SoftlayerDetector", "SquareOAuthDetector",
    "StripeDetector", "TelegramBotTokenDetector", "TwilioKeyDetector",
]
OWN_DETECTORS = ["GoogleApiKeyDetector", "GoogleOAuthSecretDetector"]
_settings_lock = threading.Lock()  # detect-secrets keeps its settings in module globals


def _by_name(name):
    base = os.path.basename(name)
    if base.endswith(".pub"):
        return None  # public halves of SSH keys are not secrets
    for pattern, reason in NAME_RULES:
        if reason and fnmatch.fnmatchcase(base, pattern):
            return reason
    for pattern, reason in PATH_RULES:
        if reason and fnmatch.fnmatchcase("/" + name, pattern):
            return reason
    return None


def _service_account(base, head):
    if not (base.endswith(".json") and b"private_key" in head):
        return None
    try:
        data = json.loads(head.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if isinstance(data, dict) and data.get("private_key"):
        kind = "a Google service-account key" if data.get("type") == "service_account" else "a JSON file with a private_key"
        return f"it is {kind}"
    return None


def _scanner_settings():
    own = "file://" + os.path.join(os.path.dirname(os.path.abspath(__file__)), "_secret_patterns.py")
    return {"plugins_used": [{"name": n} for n in DETECTORS] + [{"name": n, "path": own} for n in OWN_DETECTORS]}


def _scan(paths):
    """``{path: (secret type, line)}`` of the first secret detect-secrets finds in each file."""
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import transient_settings

    found = {}
    with _settings_lock, transient_settings(_scanner_settings()):
        for path in paths:
            for secret in scan_file(path):
                found[path] = (secret.type, secret.line_number)
                break
    return found


def find_secrets(files, allowed=()):
    """``[(name, reason)]`` for each credential file in ``files`` not named in ``allowed``."""
    allowed = {os.path.normpath(a).replace(os.sep, "/") for a in allowed}
    reasons, to_scan = {}, []
    for name, path in files:
        if name in allowed or os.path.basename(name) in allowed:
            continue
        reason = _by_name(name)
        if reason is None:
            reason, scan = _by_content(name, path)
            if scan:
                to_scan.append((name, path))
        if reason:
            reasons[name] = reason
    scanned = _scan([path for _, path in to_scan]) if to_scan else {}
    for name, path in to_scan:
        if path in scanned and name not in reasons:
            kind, line = scanned[path]
            reasons[name] = f"line {line} holds what looks like a secret ({kind})"
    return sorted(reasons.items())


def _by_content(name, path):
    """``(reason or None, whether detect-secrets should scan the file)``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SCAN_BYTES + 1)
    except OSError:
        return None, False
    reason = _service_account(os.path.basename(name), head)
    if reason is None and PEM_PRIVATE_KEY.search(head[:SCAN_BYTES]):
        reason = "it holds a PEM private key"
    return reason, reason is None and len(head) <= SCAN_BYTES and b"\0" not in head
