"""A small REST client for flagctl (standard library only), turning every failure into one clear line.

Every write carries a fresh Idempotency-Key, and is sent again with the same key when the server answered 503
(Redis did not answer) or the connection broke: the server then gives the first answer of a write that did
reach Redis and applies nothing twice.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
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


WRITE_ATTEMPTS = 4  # a write is sent at most this often (the same Idempotency-Key each time)


class ApiClient:
    def __init__(self, url: str, token: str | None, timeout: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._sleep = sleep

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                if_revision: int | None = None, timeout: float | None = None) -> Any:
        """The answer's JSON. A write is retried (same key) on 503 or a broken connection, backing off 0.5, 1,
        2 s; `if_revision` sends If-Match, so the write applies only to the flag at that revision (else 412)."""
        data = json.dumps(body, allow_nan=False).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if if_revision is not None:
            headers["If-Match"] = f'"{if_revision}"'
        write = method != "GET"
        if write:
            headers["Idempotency-Key"] = f"flagctl-{uuid.uuid4().hex}"
        attempts = WRITE_ATTEMPTS if write else 1
        for attempt in range(1, attempts + 1):
            request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                    raw = response.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as e:
                error = self._api_error(e)
                if e.code != 503 or attempt == attempts:
                    raise error from None
            except OSError as e:  # URLError, timeouts, refused and reset connections
                reason = getattr(e, "reason", e)
                # refused: the request never reached a server, so there is nothing unclear to settle
                if attempt == attempts or isinstance(reason, ConnectionRefusedError):
                    raise CliError(f"cannot reach flagsvc at {self.url}: {reason}", EXIT_UNREACHABLE) from None
            self._sleep(0.5 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

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
