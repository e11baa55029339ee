"""The HTTP the client needs, behind a two-method interface that tests replace with a fake.

`HttpTransport` uses the standard library only. `http.client` (with `ssl` and `email`) costs ~40 ms to import,
so it is imported on first use, in a background thread, never by `import flagsvc_client`.
"""

from __future__ import annotations

import contextlib

TYPE_CHECKING = False  # `typing` costs ~3 ms to import; type checkers treat this name as True
if TYPE_CHECKING:
    import http.client
    import socket
    from collections.abc import Iterator, Mapping
    from typing import Protocol

    class EventStream(Protocol):
        """An open streaming response: `lines()` yields decoded lines (no line ending) until the server closes;
        a read timeout or reset raises TransportError. `close()` may be called from another thread."""

        status: int
        headers: Mapping[str, str]

        def lines(self) -> Iterator[str]: ...

        def close(self) -> None: ...

    class Transport(Protocol):
        """What the client needs from HTTP; `HttpTransport` is the real one, tests pass fakes.
        Any HTTP status is returned, never raised; no answer at all raises TransportError."""

        def request(
            self, method: str, path: str, headers: Mapping[str, str], body: bytes | None, timeout: float
        ) -> Response: ...

        def open_stream(self, path: str, headers: Mapping[str, str], timeout: float) -> EventStream: ...


_READ_CHUNK = 1 << 20
_MAX_LINE = 64 << 20  # a snapshot line longer than this is dropped rather than buffered


USER_AGENT = "flagsvc-client/0.1"


def auth_headers(sdk_key: str) -> dict[str, str]:
    """What every request to the server carries."""
    return {"Authorization": f"Bearer {sdk_key}", "User-Agent": USER_AGENT}


class TransportError(Exception):
    """No HTTP answer: connection refused or reset, DNS failure, timeout. `refused` when nothing listens."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes = b"") -> None:
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body


class _HttpEventStream:
    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 sock: socket.socket | None) -> None:
        self._conn = conn
        self._response = response
        # The socket as it was before the response: when the server says `Connection: close`, http.client hands
        # the socket to the response and forgets it (conn.sock is None), but close() must still reach it.
        self._sock = sock
        self.status = response.status
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in response.getheaders()}  # EventStream's type

    def lines(self) -> Iterator[str]:
        """Whole lines, however long (a snapshot is one `data:` line); beyond _MAX_LINE, the line is dropped."""
        pending: list[bytes] = []
        size = 0
        try:
            while True:
                raw = self._response.readline(_READ_CHUNK)
                if not raw:
                    return
                size += len(raw)
                if not raw.endswith(b"\n"):  # a piece of a long line
                    if size <= _MAX_LINE:
                        pending.append(raw)
                    continue
                if size <= _MAX_LINE:
                    line = b"".join((*pending, raw)) if pending else raw
                    yield line.decode("utf-8", "replace").rstrip("\r\n")
                pending.clear()
                size = 0
        except (OSError, ValueError, AttributeError) as exc:  # timeout, reset, or closed under us
            raise TransportError(f"stream read failed: {exc!r}") from None

    def close(self) -> None:
        sock = self._sock or self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(2)  # SHUT_RDWR: wakes a reader blocked in recv on another thread
        self._conn.close()


class HttpTransport:
    """One connection per request: outcome posts and polls are seconds apart, and a fresh connection has no
    stale keep-alive state to get wrong after a server restart or a fork."""

    def __init__(self, base_url: str, connect_timeout: float = 5.0) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._connect_timeout = connect_timeout

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        import http.client

        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=min(timeout, self._connect_timeout))
        try:
            conn.connect()
        except ConnectionRefusedError as exc:
            conn.close()
            raise TransportError(f"connection refused: {exc}", refused=True) from None
        except OSError as exc:
            conn.close()
            raise TransportError(f"cannot connect: {exc!r}") from None
        conn.sock.settimeout(timeout)
        return conn

    def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None, timeout: float
    ) -> Response:
        conn = self._connect(timeout)
        try:
            conn.request(method, self._prefix + path, body=body, headers=dict(headers))
            response = conn.getresponse()
            data = response.read()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        except (OSError, ValueError) as exc:
            raise TransportError(f"{method} {path} failed: {exc!r}") from None
        except Exception as exc:  # http.client.HTTPException and friends: a garbled answer
            raise TransportError(f"{method} {path}: bad response: {exc!r}") from None
        finally:
            conn.close()

    def open_stream(self, path: str, headers: Mapping[str, str], timeout: float) -> EventStream:
        conn = self._connect(timeout)
        try:
            conn.request("GET", self._prefix + path, headers=dict(headers))
            sock = conn.sock
            response = conn.getresponse()
        except Exception as exc:
            conn.close()
            raise TransportError(f"GET {path} failed: {exc!r}") from None
        return _HttpEventStream(conn, response, sock)
