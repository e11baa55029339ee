"""A TCP balancer standing in for a load balancer in front of several `flagsvc serve` processes: each new
connection goes to the next backend in turn (round robin), or with `round_robin=False` to the first in order,
that accepts it; a backend that refuses is passed over, as a balancer's health check would; either side closing
ends the pair."""

from __future__ import annotations

import contextlib
import socket
import threading


class Balancer:
    def __init__(self, backends: list[int], *, round_robin: bool = True) -> None:
        self.backends = backends
        self.round_robin = round_robin
        self.connections: list[int] = []  # the backend port of each connection, in order
        self._turn = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            order = list(self.backends)
            if self.round_robin and order:
                self._turn = (self._turn + 1) % len(order)
                order = order[self._turn:] + order[:self._turn]
            for port in order:
                try:
                    backend = socket.create_connection(("127.0.0.1", port), timeout=1)
                except OSError:
                    continue
                backend.settimeout(None)
                self.connections.append(port)
                self._sockets += [client, backend]
                threading.Thread(target=self._pump, args=(client, backend), daemon=True).start()
                threading.Thread(target=self._pump, args=(backend, client), daemon=True).start()
                break
            else:
                client.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()
