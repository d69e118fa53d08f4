"""Token patterns detect-secrets does not know, as detect-secrets plugins (loaded by file path).

Kept to well-known prefixes with fixed lengths, so that they do not fire on ordinary text.
"""

import re

from detect_secrets.plugins.base import RegexBasedDetector


class GoogleApiKeyDetector(RegexBasedDetector):
    """Google API keys (Maps, Firebase, Gemini ...): ``AIza`` and 35 more characters."""

    secret_type = "Google API Key"
    denylist = [re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")]


class GoogleOAuthSecretDetector(RegexBasedDetector):
    """Google OAuth client secrets: ``GOCSPX-`` and 28 more characters."""

    secret_type = "Google OAuth Client Secret"
    denylist = [re.compile(r"\bGOCSPX-[0-9A-Za-z_-]{28}\b")]
