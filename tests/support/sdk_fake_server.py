"""A tiny flagsvc stand-in on the standard library's http.server, speaking docs/protocol.md for the SDK tests.

It serves the snapshot (`ETag`, `304`), the SSE stream (chunked, with heartbeats) and takes outcome batches,
de-duplicated by `batch_id` like the real server. Knobs let a test break it: `stream_enabled = False` answers
404 on the stream; `drop_after_apply = n` applies the next n batches and then drops the connection without an
answer (the case where only a retry with the same batch_id keeps the counts exact); `stop()` / `start()` take
it down and bring it back on the same port.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeFlagServer:
    def __init__(self, flags: dict[str, dict[str, Any]], heartbeat: float = 0.2, sdk_key: str = "sdk-test") -> None:
        self.flags = flags
        self.epoch, self.version = "epoch-1", 1
        self.heartbeat = heartbeat
        self.sdk_key = sdk_key
        self.stream_enabled = True
        self.stream_connection_close = False  # answer streams with `Connection: close`, as Werkzeug's server does
        self.drop_after_apply = 0
        self.changed = threading.Condition()
        self.stopping = False
        self.generation = 0  # end_streams() bumps it: streams opened before end
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        # what the server saw
        self.lock = threading.Lock()
        self.totals: dict[tuple[str, int, str], dict[str, int]] = {}
        self.applied_batches: set[str] = set()
        self.posts: list[str] = []
        self.duplicates = 0
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, If-None-Match)
        self.not_modified = 0

    # -- control ---------------------------------------------------------------------------------------------

    def start(self) -> str:
        self.stopping = False
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Connection refused from now on; open streams end."""
        with self.changed:
            self.stopping = True
            self.changed.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def update(self, key: str, **fields: Any) -> None:
        with self.changed:
            self.flags[key] = {**self.flags[key], **fields, "revision": self.flags[key]["revision"] + 1}
            self.version += 1
            self.changed.notify_all()

    def end_streams(self) -> None:
        """Close every open stream (as a restart or a proxy timeout would)."""
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def body(self) -> tuple[str, bytes]:
        data = {"epoch": self.epoch, "version": self.version, "flags": self.flags}
        return f'"{self.epoch}-{self.version}"', json.dumps(data, separators=(",", ":")).encode()

    # -- outcomes ----------------------------------------------------------------------------------------------

    def take_batch(self, batch: dict[str, Any]) -> bool:
        """Apply a batch once per batch_id; returns whether it was new."""
        with self.lock:
            self.posts.append(batch["batch_id"])
            if batch["batch_id"] in self.applied_batches:
                self.duplicates += 1
                return False
            self.applied_batches.add(batch["batch_id"])
            for key, entry in batch["flags"].items():
                for arm, tally in entry["arms"].items():
                    total = self.totals.setdefault((key, entry["revision"], arm), {"count": 0, "errors": 0})
                    total["count"] += tally["count"]
                    total["errors"] += tally["errors"]
            return True


def _handler(fake: FakeFlagServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {fake.sdk_key}":
                return True
            self._send(401, b'{"error": {"code": "unauthorized", "message": "bad key", "fields": {}}}')
            return False

        def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path, self.headers.get("If-None-Match")))
            if not self._authorized():
                return
            if self.path == "/sdk/v1/flags":
                etag, body = fake.body()
                if self.headers.get("If-None-Match") == etag:
                    fake.not_modified += 1
                    self._send(304, ETag=etag)
                else:
                    self._send(200, body, ETag=etag)
            elif self.path == "/sdk/v1/stream" and fake.stream_enabled:
                self._stream()
            else:
                self._send(404, b'{"error": {"code": "not_found", "message": "no", "fields": {}}}')

        def _chunk(self, text: str) -> None:
            data = text.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            if fake.stream_connection_close:
                self.send_header("Connection", "close")
            self.end_headers()
            sent_version = None
            generation = fake.generation
            try:
                while True:
                    with fake.changed:
                        if sent_version == fake.version:
                            fake.changed.wait(fake.heartbeat)
                        if fake.stopping or fake.generation != generation or not fake.stream_enabled:
                            break
                        version = fake.version
                        etag, body = fake.body()
                    if version != sent_version:
                        self._chunk(f"event: snapshot\ndata: {body.decode()}\nid: {etag.strip(chr(34))}\n\n")
                        sent_version = version
                    else:
                        self._chunk(": heartbeat\n\n")
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            self.close_connection = True

        def do_POST(self) -> None:
            fake.requests.append(("POST", self.path, None))
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not self._authorized():
                return
            if self.path != "/sdk/v1/outcomes":
                self._send(404)
                return
            batch = json.loads(body)
            new = fake.take_batch(batch)
            if fake.drop_after_apply > 0:
                fake.drop_after_apply -= 1
                self.close_connection = True
                self.connection.shutdown(2)  # applied, but the answer never arrives
                return
            answer = {"batch_id": batch["batch_id"], "accepted": len(batch["flags"]), "stale": 0, "unknown": 0}
            self._send(200, json.dumps({**answer, "duplicate": not new}).encode())

    return Handler
