"""A small REST client for flagctl (standard library only), turning every failure into one clear line."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class CliError(Exception):
    """One line for stderr, and the exit code that goes with it."""

    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status  # the HTTP status, when the server answered


EXIT_API_ERROR = 1
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4


class ApiClient:
    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body, allow_nan=False).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise self._api_error(e) from None
        except OSError as e:  # URLError, timeouts, refused and reset connections
            reason = getattr(e, "reason", e)
            raise CliError(f"cannot reach flagsvc at {self.url}: {reason}", EXIT_UNREACHABLE) from None
        return json.loads(raw) if raw else None

    def _api_error(self, e: urllib.error.HTTPError) -> CliError:
        try:
            error = json.loads(e.read())["error"]
            message = error["message"]
            if error.get("fields") and ": " not in message:
                message += ": " + "; ".join(f"{k}: {', '.join(v)}" for k, v in error["fields"].items())
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {e.code} {e.reason}"
        if e.code in (401, 403):
            hint = " (set FLAGSVC_ADMIN_TOKEN or pass --token)" if e.code == 401 else ""
            return CliError(f"{message}{hint}", EXIT_AUTH)
        return CliError(message, EXIT_API_ERROR, status=e.code)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body if body is not None else {})
