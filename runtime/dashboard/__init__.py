"""The dashboard: tasks, runs, logs, connections and pipelines in a browser.

Server-rendered HTML (Jinja2) with SVG charts drawn on the server and one small script
that tails a running task's log. ``orchzip serve`` serves it at ``/`` beside the MLOps API;
``orchzip ui`` serves it alone. Sign-in is with the serve token, kept in an HttpOnly cookie.
"""

from orchzip.runtime.dashboard._app import create_dashboard, create_ui_app, install, serve_ui

__all__ = ["create_dashboard", "create_ui_app", "install", "serve_ui"]
