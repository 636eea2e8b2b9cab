"""A small threaded TCP proxy in front of a real Redis that a test can cut at an exact point.

``cut_on(pattern, after=False)``: the first client-to-server chunk holding ``pattern`` (e.g. the SHA of a
Lua script, or a command name) either never reaches Redis (``after=False``: Redis "died" just before that
step) or reaches it but its reply never comes back (``after=True``: Redis did the step, then "died"). From
then on every connection is closed and new ones are refused until ``heal()``. Real sockets, real Redis:
the client sees exactly what a dead server looks like.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from service.infrastructure.embedded_redis import free_port


class CuttableProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.port = free_port()
        self._listener = socket.create_server((host, self.port))
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._down = False
        self._pattern: bytes | None = None
        self._after = False
        self.cuts = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut_on(self, pattern: bytes, *, after: bool = False) -> None:
        with self._lock:
            self._pattern, self._after = pattern, after

    def cut(self) -> None:
        """Cut now: every connection closed, new ones refused."""
        with self._lock:
            self._down = True
            self._pattern = None
            self.cuts += 1
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def heal(self) -> None:
        with self._lock:
            self._down = False

    @property
    def is_down(self) -> bool:
        return self._down

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data or self._down:
                return
            if upstream:
                with self._lock:
                    hit = self._pattern is not None and self._pattern in data
                    after = self._after
                if hit:
                    with self._lock:
                        self._down = True  # from now on nothing is relayed back (nor accepted)
                    if after:
                        with contextlib.suppress(OSError):
                            sink.sendall(data)  # Redis runs the step; its reply is never relayed
                        time.sleep(0.05)
                    self.cut()
                    return
            elif self._down:
                return
            try:
                sink.sendall(data)
            except OSError:
                return
