"""The HTTP/1.1 server of one process, on asyncio with h11 for the protocol.

Per connection, in order, each step bounded:
1. The request line and headers must arrive within `header_timeout`, at most `max_header_bytes` (431) with a
   target of at most `max_target_bytes` (414); anything h11 cannot parse is a 400. Until a connection shows a
   known token it counts against its address's `max_unauthenticated_per_address`.
2. The token is checked before any body is read: a request with a body and no known token gets its 401 at once,
   and the connection is closed unread. A declared body over `max_body_bytes` is a 413, unread.
3. `GET /sdk/v1/stream` is served here: once its head is out, the hub writes to its transport (`streams.py`).
   `GET /healthz` (liveness: this worker's loop answers) and the SDK poll's 304 are answered here too, with no
   thread. Everything else runs the Flask app on a thread: operators' requests (`/api/`, `/readyz`, metrics,
   the console) on a pool of their own, SDK requests on another, so a flood of SDK traffic never queues an
   operator.
Connections are read through `_Channel`, a protocol of our own rather than asyncio's streams, so that a stream's
connection can hand its transport over and leave nothing else behind.
Every answer the server gives itself is the JSON error shape.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import h11

from flagsvc import metrics
from flagsvc.api.auth import Principal, TokenRegistry, bearer_secret
from flagsvc.api.fastpath import PATH as POLL_PATH
from flagsvc.serving import responses
from flagsvc.serving.limits import ServingLimits
from flagsvc.serving.streams import STREAM_HEADERS, STREAM_PATH, StreamHub
from flagsvc.serving.wsgi_bridge import ParsedRequest, WsgiApp, call_app, environ_of

log = logging.getLogger("flagsvc.serving")

READ_CHUNK = 64 * 1024
# After an error answer, the server half-closes and reads (and drops) what the client still sends, as nginx's
# lingering close does: until the client closes, or sends nothing for `linger_idle_timeout` (5 s), or for
# `linger_timeout` (30 s) in all, or LINGER_MAX_BYTES have come (ServingLimits). A client that is done sending
# closes at once; one that keeps trickling bytes (a slow-body or slow-header attacker) is held at the cost of an
# idle socket, instead of being let go to reconnect and cost the server another connection's work every second or
# two. A lingering connection still counts against its address's cap on connections without a token; one refused
# by that cap, and any once a process holds `max_lingering` of them, lingers SHORT_LINGER_SECONDS at most, so
# that lingering cannot pile up sockets without bound.
LINGER_MAX_BYTES = 256 * 1024
SHORT_LINGER_SECONDS = 1.0
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OPERATOR_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics", "/ui", "/openapi")


# The app's answer to a request it can settle without running (the SDK poll's 304), or None: see api/fastpath.py
NotModified = Callable[[dict[str, Any]], list[tuple[str, str]] | None]


class _Hangup(Exception):
    """The client went away or broke the protocol: close without a word."""


class HttpServer:
    def __init__(self, app: WsgiApp, tokens: TokenRegistry, limits: ServingLimits, *, max_body_bytes: int,
                 hub: StreamHub | None, not_modified: NotModified | None = None, answers_health: bool = False) -> None:
        self._app = app
        self.answers_health = answers_health  # GET /healthz answered by the server itself (a flagsvc app's)
        self.not_modified = not_modified
        self._tokens = tokens
        self.limits = limits
        self._max_body = max_body_bytes
        self.hub = hub
        self._operators = ThreadPoolExecutor(limits.operator_threads, thread_name_prefix="flagsvc-operator")
        self._sdks = ThreadPoolExecutor(limits.sdk_threads, thread_name_prefix="flagsvc-sdk")
        self.unauthenticated: Counter[str] = Counter()
        self.lingering = 0  # connections answered with an error, reading what their client still sends
        self.in_flight = 0  # requests being answered (streams not included)
        self._connections: set[asyncio.Task[None]] = set()
        self.closing = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    def protocol(self) -> _Channel:
        """The protocol factory for `loop.create_server`: one `_Channel` per connection."""
        return _Channel(self)

    async def listen(self, sock: socket.socket | None = None, host: str | None = None, port: int = 0,
                     backlog: int = 2048) -> asyncio.Server:
        """Accept connections on `sock` (or a new socket on `host`:`port`) for this server."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            return await loop.create_server(self.protocol, sock=sock, backlog=backlog)
        return await loop.create_server(self.protocol, host, port, backlog=backlog)

    async def handle(self, channel: _Channel) -> None:
        """One connection, start to end (started by its channel). Never raises."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await _Connection(self, channel).run()
        except Exception:
            log.exception("connection failed")
        finally:
            if task is not None:
                self._connections.discard(task)
            if not channel.handed_over:
                channel.close()

    async def shut_down(self, grace: float) -> None:
        """Stop answering: streams end now, requests in flight get up to `grace` seconds, idle keep-alive
        connections are closed."""
        self.closing = True
        if self.hub is not None:
            await self.hub.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (self.in_flight or (self.hub is not None and self.hub.open)) and loop.time() < deadline:
            await asyncio.sleep(0.05)  # requests finish; streams write their last chunk
        if self.hub is not None:
            self.hub.abort()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=1.0)
        self._operators.shutdown(wait=False, cancel_futures=True)
        self._sdks.shutdown(wait=False, cancel_futures=True)

    def pool_for(self, path: str) -> ThreadPoolExecutor:
        return self._operators if path.startswith(OPERATOR_PREFIXES) else self._sdks


class _Channel(asyncio.Protocol):
    """A connection's transport as its coroutine sees it: `read` what has arrived, `write`, `drain`. A stream's
    channel hands its transport over to the stream hub once the response head is out (`handed_over`), and the
    coroutine ends: an open stream keeps neither."""

    __slots__ = ("_buffer", "_drained", "_eof", "_eof_written", "_lost", "_read_paused", "_server", "_waiter",
                 "_write_paused", "handed_over", "transport")

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False  # the client sent its last byte, or the connection is gone
        self._lost = False
        self._read_paused = False
        self._write_paused = False
        self._waiter: asyncio.Future[None] | None = None  # a read waiting for data
        self._drained: asyncio.Future[None] | None = None  # a drain waiting for the write buffer to empty
        self.handed_over = False
        self._eof_written = False

    # -- asyncio.Protocol -----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        asyncio.get_running_loop().create_task(self._server.handle(self))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > READ_CHUNK and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return True  # half-closed: the answer may still be written

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._lost = True
        self._wake_reader()
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError("the connection is gone"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake_reader(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- for the connection's coroutine ---------------------------------------------------------------------

    async def read(self) -> bytes:
        """What has arrived since the last read, waiting for something; b"" once the client is done sending."""
        while not self._buffer and not self._eof:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if self._lost or self.transport is None or self._eof_written:
            raise ConnectionResetError("the connection is gone, or its writing side closed")
        self.transport.write(data)

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("the connection is gone")
        if self._write_paused:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    def write_eof(self) -> None:
        if self.transport is not None and not self._lost and not self._eof_written and self.transport.can_write_eof():
            self._eof_written = True
            self.transport.write_eof()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def extra(self, name: str) -> Any:
        return self.transport.get_extra_info(name) if self.transport is not None else None

    def hand_over(self) -> asyncio.Transport:
        """The transport, for a stream to own from here on; this channel no longer reads it or closes it."""
        self.handed_over = True
        assert self.transport is not None
        self._read_paused = False
        return self.transport

    @property
    def lost(self) -> bool:
        return self._lost

    @property
    def write_paused(self) -> bool:
        return self._write_paused


class _Connection:
    def __init__(self, server: HttpServer, channel: _Channel) -> None:
        self.server = server
        self.limits = server.limits
        self.channel = channel
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.limits.max_header_bytes)
        peer = channel.extra("peername") or ("", 0)
        local = channel.extra("sockname") or ("", 0)
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else (str(peer), 0)
        self.local = (str(local[0]), int(local[1])) if isinstance(local, tuple) else (str(local), 0)
        self.counted: str | None = None  # the address this connection counts against while unauthenticated
        self.head = bytearray()  # the bytes of the request head so far (to tell a long target from long headers)
        self.path, self.method = "", "other"  # of the request being answered, for the request counter
        self.refused = False  # an error was sent: the connection ends, and lingers

    async def run(self) -> None:
        server = self.server
        address = address_key(self.client[0])
        if server.unauthenticated[address] >= self.limits.max_unauthenticated_per_address:
            await self._send_error(429, f"too many connections without a token from {address}",
                                   [("Retry-After", "10")])
            await self._linger(min(SHORT_LINGER_SECONDS, self.limits.linger_timeout))  # uncounted: kept short
            return
        server.unauthenticated[address] += 1
        self.counted = address
        try:
            await self._requests()
            if self.refused:  # still counted against its address while it lingers
                long = server.lingering < self.limits.max_lingering
                await self._linger(self.limits.linger_timeout if long else min(SHORT_LINGER_SECONDS,
                                                                                 self.limits.linger_timeout))
        finally:
            self._authenticated()

    async def _requests(self) -> None:
        """Answer the connection's requests until it ends (closed, timed out, refused, or handed to a stream)."""
        server = self.server
        try:
            first = True
            while not server.closing:
                request = await self._read_head(first)
                if request is None:
                    return
                first = False
                if not await self._answer(request):
                    return
                if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
                    return
                try:
                    self.h11.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except _Hangup:
            return

    def _authenticated(self) -> None:
        if self.counted is not None:
            self.server.unauthenticated[self.counted] -= 1
            if self.server.unauthenticated[self.counted] <= 0:
                del self.server.unauthenticated[self.counted]
            self.counted = None

    # -- reading ---------------------------------------------------------------------------------------------

    async def _read_head(self, first: bool) -> h11.Request | None:
        """The next request's head, or None when the connection should end (closed, timed out, refused). The
        first head must arrive within the header timeout; a later one may wait for the idle timeout to begin,
        and then has the header timeout from its first byte."""
        self.head.clear()
        timeout = self.limits.header_timeout if first else self.limits.idle_timeout
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout) as deadline:
                while True:
                    try:
                        event = self.h11.next_event()
                    except h11.RemoteProtocolError as e:
                        await self._protocol_error(e)
                        return None
                    if event is h11.NEED_DATA:
                        data = await self.channel.read()
                        if not first and not self.head and data:  # the next request has begun
                            timeout = self.limits.header_timeout
                            deadline.reschedule(min(deadline.when() or math.inf, loop.time() + timeout))
                        if len(self.head) <= self.limits.max_header_bytes:
                            self.head += data[: self.limits.max_header_bytes + 1 - len(self.head)]
                        self.h11.receive_data(data)
                        if not data:
                            return None  # the client closed, between requests or in the middle of one
                        continue
                    if isinstance(event, h11.Request):
                        # A head that came whole in one read never trips h11's bound on incomplete events
                        size = len(event.method) + len(event.target) + sum(len(n) + len(v) + 4 for n, v in
                                                                           event.headers) + 12
                        if len(event.target) > self.limits.max_target_bytes:
                            await self._send_error(414, f"the request target is longer than "
                                                        f"{self.limits.max_target_bytes} bytes")
                            return None
                        if size > self.limits.max_header_bytes:
                            await self._send_error(431, f"the request line and headers are longer than "
                                                        f"{self.limits.max_header_bytes} bytes")
                            return None
                        return event
                    return None  # ConnectionClosed, or something out of place
        except TimeoutError:
            if self.head or self.h11.their_state is not h11.IDLE:
                await self._send_error(408, f"the request head did not arrive within {timeout:g} s")
            return None  # an idle keep-alive connection that timed out just closes

    async def _protocol_error(self, e: h11.RemoteProtocolError) -> None:
        if e.error_status_hint == 431:
            await self._too_large()
        else:
            await self._send_error(e.error_status_hint, f"malformed HTTP request: {e}")

    async def _too_large(self) -> None:
        if self.head.find(b"\r\n", 0, self.limits.max_target_bytes + 64) < 0:
            await self._send_error(414, f"the request target is longer than {self.limits.max_target_bytes} bytes")
        else:
            await self._send_error(431, f"the request line and headers are longer than "
                                        f"{self.limits.max_header_bytes} bytes")

    async def _read_body(self) -> bytes:
        body = bytearray()
        try:
            event = self.h11.next_event()
            if isinstance(event, h11.EndOfMessage):  # no body (most requests): no timer needed
                return b""
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    if event is h11.NEED_DATA:
                        data = await self.channel.read()
                        if not data:
                            raise _Hangup
                        self.h11.receive_data(data)
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > self.server._max_body:
                            await self._send_error(413, f"the body is larger than {self.server._max_body} bytes")
                            raise _Hangup
                    elif isinstance(event, h11.EndOfMessage):
                        return bytes(body)
                    else:
                        raise _Hangup
                    event = self.h11.next_event()
        except h11.RemoteProtocolError as e:
            await self._protocol_error(e)
            raise _Hangup from None
        except TimeoutError:
            await self._send_error(408, f"the request body did not arrive within {self.limits.body_timeout:g} s")
            raise _Hangup from None

    # -- answering -------------------------------------------------------------------------------------------

    async def _answer(self, request: h11.Request) -> bool:
        """Answer one request; False when the connection must end."""
        server = self.server
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("latin-1")
        self.path, self.method = target.partition("?")[0], method
        headers = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in request.headers]
        secret = bearer_secret(next((v for n, v in headers if n == "authorization"), None))
        principal = server._tokens.identify(secret) if secret else None
        if principal is not None:
            self._authenticated()
        path = target.partition("?")[0]
        declared = next((v for n, v in headers if n == "content-length"), None)
        chunked = any(n == "transfer-encoding" for n, _ in headers)
        has_body = chunked or (declared is not None and declared.strip() not in ("", "0"))
        if has_body and principal is None:
            await self._send_error(401, "a valid bearer token is required (Authorization: Bearer <token>); "
                                        "the body was not read")
            return False
        if declared is not None and declared.strip().isdigit() and int(declared) > server._max_body:
            await self._send_error(413, f"the body is larger than {server._max_body} bytes")
            return False
        if path == STREAM_PATH and method == "GET" and server.hub is not None:
            await self._stream(principal)
            return False
        if path == responses.HEALTH_PATH and server.answers_health and method in ("GET", "HEAD") and not has_body:
            await self._health(method)
            return not server.closing
        if server.not_modified is not None and method == "GET" and path == POLL_PATH and not has_body:
            # the SDK poll whose ETag is current: answered here, without a thread (api/fastpath.py decides; a
            # path spelled otherwise, percent-encoded, goes to Flask, which gives the same answer)
            head = server.not_modified(environ_of(ParsedRequest(method, target, headers, b"", self.client,
                                                                self.local)))
            if head is not None:
                await self._read_body()  # the request's end (no body): h11 then lets the connection go on
                await self._send(h11.Response(status_code=304, headers=head, reason=b"Not Modified"),
                                 h11.EndOfMessage())
                return not server.closing
        server.in_flight += 1
        try:
            if self.h11.client_is_waiting_for_100_continue:
                await self._send(h11.InformationalResponse(status_code=100, headers=[]))
            body = await self._read_body()
            parsed = ParsedRequest(method, target, headers, body, self.client, self.local)
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(server.pool_for(path), call_app, server._app, parsed)
            head = [(name, value) for name, value in answer.headers if name.lower() != "transfer-encoding"]
            bodiless = method == "HEAD" or answer.status in (204, 304) or answer.status < 200
            if not bodiless and not any(name.lower() == "content-length" for name, _ in head):
                head.append(("Content-Length", str(len(answer.body))))
            if server.closing:
                head.append(("Connection", "close"))
            reason = responses.reason(answer.status).encode()
            response = h11.Response(status_code=answer.status, headers=head, reason=reason)
            if answer.body and not bodiless:
                await self._send(response, h11.Data(data=answer.body), h11.EndOfMessage())
            else:
                await self._send(response, h11.EndOfMessage())
            return not server.closing
        finally:
            server.in_flight -= 1

    async def _health(self, method: str) -> None:
        """Liveness is this worker's event loop answering: answered here, with no thread to queue behind, as the
        Flask view answers it, and counted in the same metrics."""
        started = time.perf_counter()
        await self._read_body()  # the request's end (no body)
        head, body = responses.health()
        response = h11.Response(status_code=200, headers=head, reason=b"OK")
        if method == "HEAD":
            await self._send(response, h11.EndOfMessage())
        else:
            await self._send(response, h11.Data(data=body), h11.EndOfMessage())
        metrics.HTTP_REQUESTS.labels(responses.HEALTH_PATH, method, "200").inc()
        metrics.HTTP_LATENCY.labels(responses.HEALTH_PATH).observe(time.perf_counter() - started)

    async def _stream(self, principal: Principal | None) -> None:
        hub = cast(StreamHub, self.server.hub)
        if principal is None:
            await self._send_error(401, "a valid bearer token is required (Authorization: Bearer <token>)")
            return
        refused = hub.admit(principal)
        if refused is not None:
            await self._send_error(429 if not hub.closing else 503, refused,
                                   [("Retry-After", str(hub.retry_after()))])
            return
        try:
            await hub.current()  # the first event's snapshot, read before the head goes out
            count_request(STREAM_PATH, "GET", 200)
            await self._send(h11.Response(status_code=200, headers=STREAM_HEADERS, reason=b"OK"))
        except (_Hangup, ConnectionError, TimeoutError):
            hub.release(principal)
            return
        except BaseException:
            hub.release(principal)
            raise
        # From here the hub writes the stream's chunks (framed once for all streams, not by h11) and the
        # transport's events end it; this coroutine, and the connection's h11 state, are done with
        hub.attach(self.channel.hand_over(), principal)

    # -- writing ---------------------------------------------------------------------------------------------

    async def _send(self, *events: h11.Event, timeout: float | None = None) -> None:
        """`events` in one write (a whole response is one segment on the wire, and one drain)."""
        try:
            data = b"".join(self.h11.send(event) or b"" for event in events)
        except h11.LocalProtocolError as e:
            raise _Hangup from e
        if data:
            try:
                self.channel.write(data)
                if self.channel.write_paused:  # the client is behind: wait for it, not forever
                    async with asyncio.timeout(timeout or self.limits.write_timeout):
                        await self.channel.drain()
            except (ConnectionError, TimeoutError) as e:
                raise _Hangup from e

    async def _send_error(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        """A JSON error, and the server's side of the connection is closed (the caller ends the connection, which
        then lingers). Written as bytes, not through h11: the connection ends with it whatever h11's state (even a
        request head too broken to parse), and refusals come in floods. Only the first error of a connection is
        sent."""
        if self.refused:
            return
        self.refused = True
        count_request(self.path, self.method, status)
        try:
            self.channel.write(responses.error_bytes(status, message, tuple(headers or ()),
                                                     body=self.method != "HEAD"))
            if self.channel.write_paused:
                async with asyncio.timeout(1.0):
                    await self.channel.drain()
            self.channel.write_eof()
        except (ConnectionError, TimeoutError):
            return

    async def _linger(self, seconds: float) -> None:
        """Read (and drop) what the client still sends after an error (lingering close, above): closing with unread
        input makes the kernel reset the connection, and the client may lose the answer just sent."""
        server = self.server
        server.lingering += 1
        drained = 0
        try:
            async with asyncio.timeout(seconds):
                while drained <= LINGER_MAX_BYTES:
                    async with asyncio.timeout(self.limits.linger_idle_timeout):
                        data = await self.channel.read()
                    if not data:
                        return
                    drained += len(data)
        except (ConnectionError, TimeoutError, OSError):
            pass
        finally:
            server.lingering -= 1


def address_key(address: str) -> str:
    """What the per-address cap counts against: the address itself, but for IPv6 its /64 (one host's share of a
    network is usually a whole /64, and every address in it is the same client's to use)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # an IPv4 client on a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return address


def count_request(path: str, method: str, status: int) -> None:
    """The server's own answers in the same request counter as the app's (the stream route by its rule, the
    rest as "unmatched", like a request that matched no route)."""
    endpoint = STREAM_PATH if path == STREAM_PATH else "unmatched"
    metrics.HTTP_REQUESTS.labels(endpoint, method if method in KNOWN_METHODS else "other", str(status)).inc()
