"""Fakes for the SDK tests: a clock you move by hand, a transport that answers from a script, snapshot makers."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from flagsvc_client._transport import Response, TransportError


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeStream:
    """A scripted SSE response: `lines` are yielded in order; an exception instance in them is raised."""

    def __init__(
        self, lines: list[str | Exception] = (), status: int = 200, content_type: str = "text/event-stream"
    ) -> None:
        self.status = status
        self.headers = {"content-type": content_type}
        self._lines = list(lines)
        self.closed = False

    def lines(self) -> Iterator[str]:
        for line in self._lines:
            if self.closed:
                return
            if isinstance(line, Exception):
                raise line
            yield line

    def close(self) -> None:
        self.closed = True


class FakeTransport:
    """Answers each request from a per-path script (a deque of Response or exception); records every call."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.scripts: dict[str, deque[Response | Exception]] = {}
        self.streams: deque[FakeStream | Exception] = deque()
        self.default = Response(503, {}, b"")

    def answer(self, path: str, *responses: Response | Exception) -> None:
        self.scripts.setdefault(path, deque()).extend(responses)

    def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None, timeout: float
    ) -> Response:
        self.requests.append({"method": method, "path": path, "headers": dict(headers), "body": body})
        script = self.scripts.get(path)
        item = script.popleft() if script else self.default
        if isinstance(item, Exception):
            raise item
        return item

    def open_stream(self, path: str, headers: Mapping[str, str], timeout: float) -> FakeStream:
        self.requests.append({"method": "STREAM", "path": path, "headers": dict(headers), "body": None})
        item = self.streams.popleft() if self.streams else TransportError("refused", refused=True)
        if isinstance(item, Exception):
            raise item
        return item

    def posted(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests if r["method"] == "POST"]


def flag(key: str = "new_checkout", **fields: Any) -> dict[str, Any]:
    data = {"key": key, "state": "rolling", "percent": 50.0, "revision": 1, "salt": key, "allow": [], "deny": []}
    data.update(fields)
    return data


def snapshot(*flags: dict[str, Any], epoch: str = "ep1", version: int = 1) -> dict[str, Any]:
    return {"epoch": epoch, "version": version, "flags": {f["key"]: f for f in flags}}


def sse(snap: dict[str, Any]) -> list[str]:
    return ["event: snapshot", f"data: {json.dumps(snap)}", f"id: {snap['epoch']}-{snap['version']}", ""]


def ok_json(data: Any, status: int = 200, **headers: str) -> Response:
    return Response(status, {"content-type": "application/json", **headers}, json.dumps(data).encode())
