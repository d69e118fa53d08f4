"""The dashboard's HTTP plumbing: templates, sign-in checks, CSRF, safe responses.

Pages are Jinja2 templates with autoescaping on, so every value from the store (names,
args, log text, error messages) is escaped; SVG from ``_charts`` is the only markup passed
through, and it escapes its own text. Responses carry a strict Content-Security-Policy:
scripts and styles come only from ``/ui/static/``.
"""

import datetime
import functools
import os
from urllib.parse import quote

import jinja2
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse

from orchzip.errors import ConfigError
from orchzip.runtime.dashboard import _charts
from orchzip.runtime.dashboard._session import COOKIE

HERE = os.path.dirname(os.path.abspath(__file__))
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class PageError(Exception):
    """A page or action the dashboard refuses: ``status`` and a message for the user."""

    def __init__(self, status, msg):
        super().__init__(msg)
        self.status, self.msg = status, msg


def _when(iso):
    if not iso:
        return ""
    return iso[:19].replace("T", " ") + " UTC"


def _ago(iso, now=None):
    if not iso:
        return ""
    moment = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    seconds = (now - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            text = f"{int(seconds // size)} {unit}"
            break
    else:
        text = f"{int(seconds)} s"
    return f"in {text}" if future else f"{text} ago"


def _duration(seconds):
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _number(value):
    return "" if value is None else f"{value:,}"


def _percent(value):
    return "" if value is None else f"{value * 100:.0f}%"


ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                         autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
ENV.filters.update(when=_when, ago=_ago, duration=_duration, number=_number, percent=_percent,
                   urlpart=lambda v: quote(str(v), safe=""))
ENV.globals.update(status_colours=_charts.STATUS_COLOURS, svg=Markup)


def render(request, template, status=200, **values):
    sessions = request.app.state.sessions
    nonce = request.state.nonce if hasattr(request.state, "nonce") else None
    html = ENV.get_template(template).render(
        csrf=sessions.csrf(nonce) if nonce else "", signed_in=nonce is not None, path=request.url.path, **values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def redirect(url):
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def safe_next(value, default="/"):
    """``value`` if it is a path of this dashboard (never another site), else ``default``."""
    if isinstance(value, str) and (value == "/" or value.startswith("/ui/")) and "\\" not in value \
            and not value.startswith("//"):
        return value
    return default


def session_nonce(request):
    sessions = request.app.state.sessions
    nonce = sessions.valid(request.cookies.get(COOKIE))
    if nonce is None:
        # Scripts may send the API's bearer header instead of signing in.
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given and sessions.token_matches(given):
            return "bearer"
    return nonce


def page(handler):
    """A GET page that needs a signed-in user; its body runs on a worker thread."""
    @functools.wraps(handler)
    async def run(request):
        nonce = session_nonce(request)
        if nonce is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return redirect("/ui/login?next=" + quote(safe_next(target), safe=""))
        request.state.nonce = nonce
        return await _guarded(request, handler)
    return run


def action(handler):
    """A POST that changes something: signed in, and the form's CSRF token must match the session's."""
    @functools.wraps(handler)
    async def run(request):
        nonce = session_nonce(request)
        if nonce is None:
            return render(request, "error.html", status=401, title="Not signed in",
                          message="Sign in first: your session has ended or was never started.")
        request.state.nonce = nonce
        form = await request.form(max_files=0, max_fields=16)
        if nonce != "bearer" and not request.app.state.sessions.csrf_ok(nonce, form.get("csrf")):
            return render(request, "error.html", status=403, title="Refused",
                          message="The form's security token is missing or stale. Reload the page and try again.")
        request.state.form = form
        return await _guarded(request, handler)
    return run


async def _guarded(request, handler):
    try:
        return await run_in_threadpool(handler, request)
    except PageError as err:
        return render(request, "error.html", status=err.status, title="Not possible", message=err.msg)
    except ConfigError as err:
        from orchzip.runtime.store import NotFound
        status = 404 if isinstance(err, NotFound) else 409
        return render(request, "error.html", status=status, title="Not found" if status == 404 else "Not possible",
                      message=str(err).splitlines()[0])


def page_number(request, total, per_page):
    """The ``page`` query parameter, clamped to the pages there are; and the page count."""
    pages = max(1, -(-total // per_page))
    try:
        number = int(request.query_params.get("page", "1"))
    except ValueError:
        number = 1
    return min(max(number, 1), pages), pages
