"""The asyncio HTTP server (flagsvc.serving.http) in-process, with a small WSGI app: HTTP/1.1 framing cases a
real client meets (keep-alive and pipelining, HEAD, 304, chunked bodies, Expect: 100-continue), body limits,
and the per-address cap. The real-server tests (timeouts, streams, SIGTERM) are in
tests/integration/test_serving.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from flagsvc.api.auth import TokenRegistry
from flagsvc.serving.http import LINGER_MAX_BYTES, HttpServer, address_key
from flagsvc.serving.limits import ServingLimits

TOKEN = "admin-token-123"


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    path = environ["PATH_INFO"]
    if path == "/not-modified":
        start_response("304 Not Modified", [("ETag", '"x"')])
        return []
    doc = {"method": environ["REQUEST_METHOD"], "path": path, "query": environ["QUERY_STRING"],
           "length": len(body), "echo": body.decode("latin-1")[:50]}
    payload = json.dumps(doc).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


@pytest.fixture
def server() -> Iterator[int]:
    with serving(ServingLimits(max_unauthenticated_per_address=4, header_timeout=5, body_timeout=5)) as (port, _):
        yield port


@contextlib.contextmanager
def serving(limits: ServingLimits) -> Iterator[tuple[int, HttpServer]]:
    """The server on its own event loop in a thread: (its port, the server)."""
    http = HttpServer(app, TokenRegistry({"ops": TOKEN}, {}), limits, max_body_bytes=2048, hub=None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listener = asyncio.run_coroutine_threadsafe(http.listen(host="127.0.0.1", port=0), loop).result(5)
    yield listener.sockets[0].getsockname()[1], http

    async def stop() -> None:
        listener.close()
        await http.shut_down(grace=1.0)

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def talk(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in order, Content-Length framed."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        length = int(headers.get(b"content-length", b"0"))
        found.append((int(lines[0].split()[1]), rest[:length]))
        raw = rest[length:]
    return found


AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()


def test_pipelined_keep_alive_requests_are_answered_in_order(server):
    raw = talk(server, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                       b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    answers = responses(raw)
    assert [json.loads(body)["path"] for _, body in answers] == ["/a", "/b", "/c"]
    assert json.loads(answers[1][1])["query"] == "x=1"


def test_a_connection_goes_on_after_every_kind_of_answer(server):
    """Keep-alive survives a 200, a 304, a HEAD and a 404-like answer from the app, in one connection."""
    raw = talk(server, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /not-modified HTTP/1.1\r\nHost: t\r\n\r\n"
                       b"HEAD /b HTTP/1.1\r\nHost: t\r\n\r\nGET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200 OK") == 3 and raw.count(b"HTTP/1.1 304") == 1


def test_head_and_304_carry_no_body(server):
    raw = talk(server, b"HEAD /a HTTP/1.1\r\nHost: t\r\n\r\nGET /not-modified HTTP/1.1\r\nHost: t\r\n"
                       b"Connection: close\r\n\r\n")
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert rest.startswith(b"HTTP/1.1 304 Not Modified") and rest.endswith(b"\r\n\r\n")
    assert b"content-length" not in rest.lower()


def test_a_chunked_body_reaches_the_app_whole(server):
    raw = talk(server, b"POST /p HTTP/1.1\r\nHost: t\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    [(status, body)] = responses(raw)
    assert status == 200 and json.loads(body)["echo"] == "hello world"


def test_expect_100_continue_gets_its_interim_answer(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as conn:
        conn.sendall(b"POST /p HTTP/1.1\r\nHost: t\r\n" + AUTH + b"Content-Length: 3\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\n\r\n")
        assert conn.recv(1024).startswith(b"HTTP/1.1 100")
        conn.sendall(b"abc")
        rest = b""
        while chunk := conn.recv(65536):
            rest += chunk
    [(status, body)] = responses(rest)
    assert status == 200 and json.loads(body)["echo"] == "abc"


def test_bodies_past_the_limit_are_413_declared_or_chunked(server):
    declared = responses(talk(server, b"POST /p HTTP/1.1\r\nHost: t\r\n" + AUTH + b"Content-Length: 5000\r\n\r\n"))
    chunk = b"%x\r\n%s\r\n" % (3000, b"x" * 3000)
    chunked = responses(talk(server, b"POST /p HTTP/1.1\r\nHost: t\r\n" + AUTH
                                     + b"Transfer-Encoding: chunked\r\n\r\n" + chunk + b"0\r\n\r\n"))
    for [(status, body)] in (declared, chunked):
        assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"


def test_an_authenticated_connection_no_longer_counts_against_its_address(server):
    """Four idle connections fill the address's cap; a fifth is refused. A connection that has shown a token
    leaves the count, so the address has room again."""
    idle = [socket.create_connection(("127.0.0.1", server), timeout=5) for _ in range(4)]
    try:
        assert wait_until(lambda: responses(talk(server, b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"))[0][0] == 429)
        idle[0].sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n" + AUTH + b"\r\n")
        assert idle[0].recv(65536).startswith(b"HTTP/1.1 200")
        [(status, _)] = responses(talk(server, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
        assert status == 200
    finally:
        for conn in idle:
            conn.close()


def wait_until(check, attempts: int = 50) -> bool:
    import time

    for _ in range(attempts):
        if check():
            return True
        time.sleep(0.05)  # the server accepts the idle connections on its own loop
    return False


# --- refusals: lingering close, bounded ------------------------------------------------------------------------

REFUSED_POST = b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n"  # no token: 401, unread


def keeps_taking(conn: socket.socket, chunks: int, chunk: bytes, pause: float) -> bool:
    """Whether the server still takes `chunks` writes of `chunk` (a server that has closed answers with a reset)."""
    try:
        for _ in range(chunks):
            conn.sendall(chunk)
            time.sleep(pause)
        return True
    except OSError:
        return False


def test_a_refused_client_is_read_no_further_than_the_linger_byte_bound():
    with serving(ServingLimits(linger_timeout=30, linger_idle_timeout=5)) as (port, _), \
            socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(REFUSED_POST)
        assert conn.recv(65536).startswith(b"HTTP/1.1 401")
        # four times the bound, quickly: the server stops reading at the bound and closes
        assert not keeps_taking(conn, 4 * LINGER_MAX_BYTES // 65536 + 20, b"x" * 65536, 0.01)


def test_a_connection_refused_by_the_address_cap_lingers_a_second_at_most():
    limits = ServingLimits(max_unauthenticated_per_address=2, linger_timeout=30, linger_idle_timeout=5)
    with serving(limits) as (port, http):
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        try:
            assert wait_until(lambda: sum(http.unauthenticated.values()) == 2)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as over:
                over.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n")
                assert over.recv(65536).startswith(b"HTTP/1.1 429")
                started = time.monotonic()
                assert not keeps_taking(over, 80, b"X", 0.1)  # trickling on, it is cut after its second
                assert time.monotonic() - started < 6
        finally:
            for conn in idle:
                conn.close()


def test_past_max_lingering_a_refused_connection_lingers_a_second_at_most():
    limits = ServingLimits(linger_timeout=30, linger_idle_timeout=5, max_lingering=1)
    with serving(limits) as (port, http), socket.create_connection(("127.0.0.1", port), timeout=5) as first, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as second:
        first.sendall(REFUSED_POST)
        assert first.recv(65536).startswith(b"HTTP/1.1 401")
        assert wait_until(lambda: http.lingering == 1)
        second.sendall(REFUSED_POST)
        assert second.recv(65536).startswith(b"HTTP/1.1 401")
        started = time.monotonic()
        assert not keeps_taking(second, 80, b"X", 0.1)
        assert time.monotonic() - started < 6
        assert keeps_taking(first, 5, b"X", 0.1)  # the first one, within the bound, is still held


def test_a_later_request_head_has_the_header_timeout_from_its_first_byte():
    with serving(ServingLimits(header_timeout=0.5, idle_timeout=20)) as (port, _), \
            socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n" + AUTH + b"\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(0.8)  # idle between requests: longer than the header timeout is fine
        started = time.monotonic()
        conn.sendall(b"GET /b HTTP/1.1\r\n")
        keeps_taking(conn, 15, b"X-Slow: 1\r\n", 0.2)  # 3 s of trickled headers
        answer = conn.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"0.5 s" in answer and time.monotonic() - started < 10  # not the 20 s idle timeout


def test_a_connection_gets_one_error_and_no_traceback(caplog):
    with serving(ServingLimits(header_timeout=1, linger_timeout=3, linger_idle_timeout=2)) as (port, _), \
            socket.create_connection(("127.0.0.1", port), timeout=10) as conn, \
            caplog.at_level(logging.ERROR, "flagsvc.serving"):
        conn.sendall(b"BAD REQUEST LINE\x01\r\n\r\n")
        keeps_taking(conn, 15, b"x", 0.15)  # past the header timeout, trickling on
        received = b""
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                received += chunk
    assert received.count(b"HTTP/1.1 ") == 1 and received.startswith(b"HTTP/1.1 400"), received
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_the_address_cap_counts_an_ipv6_client_by_its_64():
    assert address_key("203.0.113.9") == "203.0.113.9"
    assert address_key("2001:db8:1:2:a::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("unix-socket") == "unix-socket"
