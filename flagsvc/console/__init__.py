"""The operator web console at /ui/ (docs/console.md): server-rendered pages (Jinja, autoescaped), static ES
modules and CSS served by Flask, no Node at run time. A session cookie from signing in with an admin or read
token, a CSRF token on every change, a strict Content-Security-Policy, and live pages fed by /ui/events.

`bp` is registered by create_app; the console's own guard (session.py) authenticates its requests, not the API's
bearer tokens (create_app's guard lets the `console.` endpoints through to it)."""

from __future__ import annotations

import flagsvc.console.actions
import flagsvc.console.events
import flagsvc.console.pages  # noqa: F401  # each module adds its routes to bp
from flagsvc.console.blueprint import bp

__all__ = ["bp"]
