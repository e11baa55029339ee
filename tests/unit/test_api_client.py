"""flagctl's client: every write carries an Idempotency-Key and is retried with it; reads are sent once."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flagsvc.cli.api_client import WRITE_ATTEMPTS, ApiClient, CliError


class Script:
    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.seen: list[tuple[str, dict[str, str]]] = []


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            script.seen.append((self.command, dict(self.headers)))
            status = script.statuses.pop(0) if script.statuses else 200
            body = json.dumps({"error": {"code": "unavailable", "message": "down", "fields": {}}} if status >= 400
                              else {"ok": True}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", script
    httpd.shutdown()
    httpd.server_close()


def test_a_write_is_retried_on_503_with_the_same_key(server):
    url, script = server
    script.statuses = [503, 503]
    slept = []
    assert ApiClient(url, "t", sleep=slept.append).request("POST", "/api/v1/flags/x/promote", {}) == {"ok": True}
    keys = [headers["Idempotency-Key"] for _, headers in script.seen]
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0].startswith("flagctl-")
    assert slept == [0.5, 1.0]


def test_each_write_has_its_own_key_and_if_match_when_asked(server):
    url, script = server
    client = ApiClient(url, "t", sleep=lambda s: None)
    client.request("PATCH", "/api/v1/flags/x", {"description": "a"}, if_revision=7)
    client.request("PATCH", "/api/v1/flags/x", {"description": "a"})
    (_, first), (_, second) = script.seen
    assert first["Idempotency-Key"] != second["Idempotency-Key"]
    assert first["If-Match"] == '"7"' and "If-Match" not in second


def test_a_write_gives_up_after_its_attempts_and_reads_are_not_retried(server):
    url, script = server
    script.statuses = [503] * 10
    client = ApiClient(url, "t", sleep=lambda s: None)
    with pytest.raises(CliError):
        client.request("PUT", "/api/v1/flags/x/percent", {"percent": 5})
    assert len(script.seen) == WRITE_ATTEMPTS
    script.seen.clear()
    with pytest.raises(CliError):
        client.request("GET", "/api/v1/flags/x")
    assert len(script.seen) == 1 and "Idempotency-Key" not in script.seen[0][1]


def test_a_refused_connection_is_not_retried():
    slept = []
    with pytest.raises(CliError) as error:
        ApiClient("http://127.0.0.1:1", "t", sleep=slept.append).request("POST", "/api/v1/flags", {"key": "x"})
    assert error.value.exit_code == 3 and slept == []
