"""A TCP proxy in front of a real redis-server that can lose one answer on its way back: the command reached
Redis and ran, the caller never hears of it (the connection breaks). That is the ambiguous failure a retried
write must survive."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class AnswerLosingProxy:
    def __init__(self, redis_host: str, redis_port: int) -> None:
        self._target = (redis_host, redis_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lose_after: bytes | None = None  # the next answer to a command containing this is lost
        self._lock = threading.Lock()
        self.lost = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_next_answer_to(self, command: bytes) -> None:
        with self._lock:
            self._lose_after = command

    @property
    def armed(self) -> bool:
        return self._lose_after is not None

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            losing = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, losing), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, losing), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, losing: threading.Event) -> None:
        for chunk in _chunks(client):
            with self._lock:
                if self._lose_after is not None and self._lose_after in chunk:
                    self._lose_after = None
                    losing.set()
            upstream.sendall(chunk)
        upstream.close()

    def _answers(self, upstream: socket.socket, client: socket.socket, losing: threading.Event) -> None:
        for chunk in _chunks(upstream):
            if losing.is_set():  # Redis ran it and answered; the caller will never know
                self.lost += 1
                client.shutdown(socket.SHUT_RDWR)
                client.close()
                upstream.close()
                return
            client.sendall(chunk)
        client.close()


def _chunks(sock: socket.socket) -> Iterator[bytes]:
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        yield chunk


@contextmanager
def answer_losing_proxy(redis_url: str) -> Iterator[AnswerLosingProxy]:
    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    proxy = AnswerLosingProxy(host, int(port))
    try:
        yield proxy
    finally:
        proxy.close()
