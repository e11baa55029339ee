"""The HTTP front of `flagsvc serve` against hostile and heavy clients, on a real server process: stream caps,
slow clients cut at their timeouts, tokens refused before a body is read, server-level errors as JSON, and a
SIGTERM with thousands of open streams."""

from __future__ import annotations

import asyncio
import json
import resource
import select
import signal
import socket
import time

import pytest
import requests

from tests.support import wait_for
from tests.support.servers import Server

pytestmark = pytest.mark.slow  # real `flagsvc serve` processes

ADMIN_TOKEN, SDK_KEY = "admin-token-123", "sdk-key-12345"
LIMITS = {"FLAGSVC_HEADER_TIMEOUT": "1", "FLAGSVC_BODY_TIMEOUT": "1", "FLAGSVC_MAX_STREAMS_PER_KEY": "3",
          "FLAGSVC_MAX_UNAUTHENTICATED_PER_ADDRESS": "20"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url):
    env = {"FLAGSVC_REDIS_URL": redis_url, "FLAGSVC_REDIS_NAMESPACE": "serving-limits:",
           "FLAGSVC_ADMIN_TOKENS": f"ops={ADMIN_TOKEN}", "FLAGSVC_SDK_KEYS": f"web={SDK_KEY}", **LIMITS}
    serving = Server(tmp_path_factory.mktemp("serving"), "--workers", "1", env=env)
    yield serving
    assert serving.stop() == 0


def exchange(server: Server, *parts: bytes, pause: float = 0.0, wait: float = 10.0) -> tuple[bytes, float]:
    """Send `parts` (pausing between them, and stopping once the server has answered, as a client does), then
    read until the server closes its side: (all it sent, seconds taken)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as conn:
        started = time.monotonic()
        for part in parts:
            try:
                conn.sendall(part)
            except OSError:
                break  # the server hung up on us: what it said is still there to read
            if select.select([conn], [], [], pause)[0]:  # the client's slowness is what is under test
                break  # the server has answered (and half-closed): a client stops sending
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received, time.monotonic() - started


def error_of(raw: bytes) -> tuple[int, dict, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def stream_request(key: str = SDK_KEY) -> bytes:
    return f"GET /sdk/v1/stream HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n\r\n".encode()


def test_streams_past_the_per_key_cap_get_429_with_retry_after(server):
    opened = []
    try:
        for _ in range(3):
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            conn.sendall(stream_request())
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 OK"), "a stream within the cap is refused"
            opened.append(conn)
        raw, _ = exchange(server, stream_request())
        status, headers, body = error_of(raw)
        assert status == 429 and body["error"]["code"] == "rate_limited" and "'web'" in body["error"]["message"]
        assert 1 <= int(headers["retry-after"]) <= 60
        opened.pop().close()  # one ends: the key is under its cap again
        assert wait_for(lambda: exchange_head(server).startswith(b"HTTP/1.1 200 OK"), 5)
    finally:
        for conn in opened:
            conn.close()


def exchange_head(server: Server) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(stream_request())
        return conn.recv(65536)


def test_a_slow_header_client_is_cut_at_the_header_timeout(server):
    parts = [b"GET /healthz HTTP/1.1\r\n", *(b"X-Slow-%d: 1\r\n" % i for i in range(20))]
    raw, took = exchange(server, *parts, pause=0.5)
    status, _, body = error_of(raw)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert took < 5  # cut at about the 1 s timeout, long before its 10 s of headers were through


def test_a_slow_body_client_is_cut_at_the_body_timeout(server):
    head = (b"POST /api/v1/flags HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + ADMIN_TOKEN.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n")
    raw, took = exchange(server, head, *(b"{" for _ in range(20)), pause=0.5)
    status, _, body = error_of(raw)
    assert status == 408 and "body" in body["error"]["message"]
    assert took < 5


def test_a_request_without_a_known_token_is_refused_before_its_body_is_read(server):
    """The client declares a large body and sends none of it: the 401 comes at once, the body unread."""
    for token in ("wrong-token-999", None):
        auth = b"" if token is None else b"Authorization: Bearer " + token.encode() + b"\r\n"
        head = b"POST /api/v1/flags HTTP/1.1\r\nHost: t\r\n" + auth + b"Content-Length: 100000\r\n\r\n"
        raw, took = exchange(server, head)
        status, headers, body = error_of(raw)
        assert status == 401 and "not read" in body["error"]["message"]
        assert "bearer" in headers["www-authenticate"].lower()
        assert took < 2  # at once, and half-closed (the server then reads and drops what the client still sends)


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(200)) + b"\r\n",
     431, "headers_too_large"),
])
def test_server_level_errors_are_json(server, request_bytes, status, code):
    raw, _ = exchange(server, request_bytes)
    got, headers, body = error_of(raw)
    assert (got, body["error"]["code"]) == (status, code)
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"


def test_connections_without_a_token_are_capped_per_address(server):
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(20)]
    try:
        time.sleep(0.3)  # let the server accept them all: the cap is what it counts, not what we sent
        raw, _ = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = error_of(raw)
        assert status == 429 and "without a token" in body["error"]["message"] and headers["retry-after"]
    finally:
        for conn in idle:
            conn.close()
    # once they are gone (or cut at the header timeout), the address is served again
    assert wait_for(lambda: requests.get(f"{server.url}/healthz", timeout=5).status_code == 200, 5)


def test_operators_and_health_answer_with_streams_open(server):
    """The admin API and health run on the operators' own thread pool, not behind SDK traffic."""
    assert requests.get(f"{server.url}/api/v1/flags", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                        timeout=5).status_code == 200
    assert requests.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}


# --- SIGTERM with thousands of streams ------------------------------------------------------------------------


async def open_streams(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(stream_request())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        await reader.readuntil(b"\n\n")  # the first snapshot event
        return reader, writer

    opened = []
    for start in range(0, n, 200):  # in waves: the listen backlog need not hold thousands at once
        opened += await asyncio.gather(*(one() for _ in range(min(200, n - start))))
    return opened


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    return await reader.read()  # until EOF


def test_sigterm_with_2000_open_streams_ends_them_all_exits_0_and_hands_over_leadership(tmp_path, redis_url,
                                                                                         namespace):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    env = {"FLAGSVC_REDIS_URL": redis_url, "FLAGSVC_REDIS_NAMESPACE": namespace,
           "FLAGSVC_ADMIN_TOKENS": f"ops={ADMIN_TOKEN}", "FLAGSVC_SDK_KEYS": f"web={SDK_KEY}"}
    first = Server(tmp_path / "a", "--workers", "2", env=env)
    assert wait_for(lambda: "leads (token" in first.output(), 10), first.output()
    second = Server(tmp_path / "b", "--workers", "1", env=env)
    assert "leads (token" not in second.output()

    async def scenario() -> tuple[list[bytes], float, int]:
        streams = await open_streams(first.port, 2000)
        metrics = requests.get(f"{first.url}/metrics", timeout=10).text
        open_now = sum(float(line.split()[-1]) for line in metrics.splitlines()
                       if line.startswith("flagsvc_sse_clients"))
        stopped_at = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        ends = await asyncio.wait_for(asyncio.gather(*(read_to_end(r) for r, _ in streams)), 20)
        took = time.monotonic() - stopped_at
        for _, writer in streams:
            writer.close()
        return ends, took, int(open_now)

    ends, took, open_before = asyncio.run(scenario())
    assert open_before == 2000
    assert first.proc.wait(20) == 0
    # every stream was ended by the server (chunked encoding's last chunk), none cut or left hanging
    assert all(end.endswith(b"0\r\n\r\n") for end in ends), {end[-20:] for end in ends}
    assert took < 8, took
    assert wait_for(lambda: "leads (token" in second.output(), 4), second.output()  # handed over, not expired
    assert second.stop() == 0


def test_the_sdk_poll_304_is_answered_on_a_connection_that_stays_open(server):
    """The 304 the server answers itself, without a thread: keep-alive goes on after it (two polls and a
    health check on one connection), its headers are the Flask view's."""
    sdk = {"Authorization": f"Bearer {SDK_KEY}"}
    etag = requests.get(f"{server.url}/sdk/v1/flags", headers=sdk, timeout=5).headers["ETag"]
    poll = f"GET /sdk/v1/flags HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {SDK_KEY}\r\nIf-None-Match: {etag}\r\n\r\n"
    raw, _ = exchange(server, (poll + poll).encode() + b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 304 Not Modified\r\n") == 2 and raw.count(b"HTTP/1.1 200 OK\r\n") == 1
    via_flask = requests.get(f"{server.url}/sdk/v1/flags?via=flask", headers={**sdk, "If-None-Match": etag}, timeout=5)
    assert via_flask.status_code == 304 and via_flask.headers["ETag"] == etag
    assert f"ETag: {etag}\r\nCache-Control: no-cache\r\n".encode() in raw


def test_a_refused_client_that_keeps_sending_is_held_and_one_that_stops_is_let_go(server):
    """After its 401 the server reads and drops what a client still sends (lingering close): a slow-body client
    trickling on is held rather than let go to reconnect at once; one that goes quiet is closed after a few
    seconds (LINGER_IDLE_SECONDS)."""
    head = b"POST /api/v1/flags HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(head)
        answer = conn.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401"), answer
        assert conn.recv(65536) == b""  # half-closed: the answer is all there is
        for _ in range(8):  # 2.4 s of trickling, well past the old one-second linger
            conn.sendall(b"{")
            time.sleep(0.3)
        conn.sendall(b"{")  # still read by the server: no reset
        time.sleep(0.3)
        conn.sendall(b"{")
        time.sleep(7)  # quiet for longer than LINGER_IDLE_SECONDS: the server has closed
        with pytest.raises(OSError):  # the first byte is answered with a reset, the next one fails
            conn.sendall(b"{")
            time.sleep(0.3)
            conn.sendall(b"{")
