"""What the views use, kept per app in app.extensions (no module-level state): the services and the tokens."""

from __future__ import annotations

from typing import cast

from flask import current_app

from flagsvc.api.auth import TokenRegistry
from flagsvc.service import Services


def services() -> Services:
    return cast(Services, current_app.extensions["flagsvc"])


def tokens() -> TokenRegistry:
    return cast(TokenRegistry, current_app.extensions["flagsvc.tokens"])
