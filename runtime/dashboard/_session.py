"""Dashboard sign-in: the serve token, typed once into a form, becomes a session cookie.

The cookie never holds the token itself: it holds an issue time, a random nonce and an
HMAC of both keyed by the token, so it is checked without server-side state, survives a
restart, and stops working when the token changes. Every form that changes something
carries a CSRF token, the HMAC of the session's nonce under another label: a page of
another site cannot read it, so it cannot forge the POST.
"""

import hashlib
import hmac
import secrets
import time

COOKIE = "orchzip_session"
MAX_AGE_SECONDS = 7 * 24 * 3600


class Sessions:
    """Issue and check session cookies and CSRF tokens for one server token."""

    def __init__(self, token):
        self._key = token.encode("utf-8")

    def token_matches(self, given):
        return hmac.compare_digest(given.strip().encode("utf-8"), self._key)

    def _mac(self, label, text):
        return hmac.new(self._key, f"{label}:{text}".encode("utf-8"), hashlib.sha256).hexdigest()

    def issue(self, now=None):
        """A new cookie value."""
        body = f"{int(now or time.time())}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._mac('session', body)}"

    def valid(self, value, now=None):
        """The session's nonce if ``value`` is a cookie we issued that has not expired, else None."""
        issued, _, rest = (value or "").partition(".")
        nonce, _, mac = rest.partition(".")
        if not (issued.isdigit() and nonce and mac):
            return None
        if not hmac.compare_digest(mac, self._mac("session", f"{issued}.{nonce}")):
            return None
        if (now or time.time()) - int(issued) > MAX_AGE_SECONDS:
            return None
        return nonce

    def csrf(self, nonce):
        return self._mac("csrf", nonce)

    def csrf_ok(self, nonce, given):
        return bool(nonce) and hmac.compare_digest(self.csrf(nonce), given or "")
