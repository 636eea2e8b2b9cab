"""Redis clients with short timeouts behind a small circuit breaker.

A dead or stalled Redis must cost a request at most one short timeout, and most requests nothing at all:
after ``failures`` consecutive connection errors or timeouts the circuit opens and requests skip Redis
(answering from process memory where they can) until ``reset_s`` has passed and a request's probe succeeds.

The breaker is the request path's alone: only requests open or close it. Background work (the model
poller, the customer cache's invalidation connections) uses its own client (``RedisGateway.background``,
with a timeout fit for work nobody waits on) and never touches the breaker: a slow poll on a busy but
healthy Redis must not turn a second of requests into 503s and fallbacks.

The breaker is hand-written rather than ``pybreaker`` because that library holds one lock for the whole
guarded call, which would serialise every Redis round trip of a threaded worker.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import AskError, ClusterDownError, MovedError, TryAgainError
from redis.retry import Retry

from redis_state.clients import CLUSTER_ERRORS, make_redis
from service.domain.errors import Unavailable
from settings import Settings

log = logging.getLogger("tailor.redis")
T = TypeVar("T")

#: Errors meaning "Redis is not answering" (as opposed to a command error of a healthy server).
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class CircuitBreaker:
    """Closed -> open after N consecutive outages -> half-open after ``reset_s`` (one probe at a time)."""

    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._open_until = 0.0
        self._is_open = False

    @property
    def is_open(self) -> bool:
        return self._is_open

    def allow(self) -> bool:
        """Whether a call may try Redis now; in half-open state one caller per ``reset_s`` gets through."""
        if not self._is_open:
            return True
        with self._lock:
            now = self._clock()
            if now < self._open_until:
                return False
            self._open_until = now + self.reset_s
            return True

    def success(self) -> None:
        if self._count == 0 and not self._is_open:
            return
        with self._lock:
            was_open = self._is_open
            self._count = 0
            self._is_open = False
        if was_open:
            log.warning("Redis answers again: circuit closed")

    def failure(self) -> None:
        with self._lock:
            self._count += 1
            if self._count >= self.failures and not self._is_open:
                self._is_open = True
                self._open_until = self._clock() + self.reset_s
                opened = True
            else:
                opened = False
        if opened:
            log.warning("Redis unreachable: circuit open, answering from process memory where possible")

    def trip(self) -> None:
        """Open at once (the poller saw Redis fail)."""
        for _ in range(max(self.failures - self._count, 1)):
            self.failure()


def make_client(url: str, timeout_s: float, connect_timeout_s: float, *, cluster: bool = False,
                retries: int = 0) -> redis.Redis:
    """A client that never retries on its own: retries are the breaker's job, not a hidden loop.

    ``unix://`` URLs (a Redis on the same host) are accepted too; keep-alive applies to TCP only. With
    ``cluster`` it is a ``RedisCluster`` (``redis_state.clients``) that repeats a command ``retries`` times
    after a connection error or timeout, refreshing the slot map: that carries a request over a failover.
    """
    if cluster:
        return make_redis(url, cluster=True, socket_timeout=timeout_s, socket_connect_timeout=connect_timeout_s,
                          retries=retries, socket_keepalive=True)
    tcp = {} if url.startswith("unix:") else {"socket_keepalive": True}
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=connect_timeout_s,
        retry=Retry(NoBackoff(), 0), health_check_interval=0, **tcp,
    )


def send_commands(client: redis.Redis, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Run ``commands`` as one pipeline (one write, then the replies in order) and return the raw replies,
    an error reply as its ``ResponseError`` in place.

    What ``client.pipeline()`` does, without its per-command Python layers (argument normalisation, a
    packing generator, response callbacks): on a batch of small scripts those cost more than Redis
    spends running them. Connection and timeout errors propagate; the connection is then dropped.
    """
    if not commands:
        return []
    if type(client) is RedisCluster:
        return _send_to_cluster(client, commands)
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([b"".join(hiredis.pack_command(tuple(command)) for command in commands)],
                                       check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as error:
                replies.append(error)
        return replies
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def group_by_slot(client: redis.Redis, names: Sequence[str], key_of: Callable[[str], str]) -> list[list[str]]:
    """``names`` in groups whose keys (``key_of(name)`` and keys of the same hash tag) one script may touch
    together: every name in one group on a single Redis, the names of each hash slot on a cluster."""
    if type(client) is not RedisCluster:
        return [list(names)] if names else []
    groups: dict[int, list[str]] = {}
    for name in names:
        groups.setdefault(client.keyslot(key_of(name)), []).append(name)
    return list(groups.values())


#: Replies meaning "this node does not serve that slot (now)": the command did not run, so it is safe to send
#: it again once the slot map is fresh (a failover answers MOVED to what was queued on the old primary).
_REDIRECTED = (MovedError, AskError, TryAgainError, ClusterDownError)


def _command_key(command: Sequence[Any]) -> Any:
    """The key that decides a command's slot: a script's first key, else the first argument."""
    name = command[0]
    if name in ("EVALSHA", "EVAL", "evalsha", "eval"):
        return command[3] if int(command[2]) > 0 else None
    return command[1] if len(command) > 1 else None


def _send_to_cluster(client: RedisCluster, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """``send_commands`` on a cluster: the commands grouped by the primary that owns their slot, one packed
    pipeline per node, all written before any reply is read (so the round trips overlap), replies put back in
    order. Commands answered with a redirection (``MOVED`` after a failover, ``ASK`` / ``TRYAGAIN`` during a
    resharding, ``CLUSTERDOWN`` while a primary is being replaced) did not run: they are sent again one by one
    through ``client.execute_command``, which refreshes the slot map and follows redirections itself.
    """
    nodes = client.nodes_manager
    groups: dict[str, tuple[Any, list[int]]] = {}
    for index, command in enumerate(commands):
        key = _command_key(command)
        node = nodes.get_node_from_slot(client.keyslot(key)) if key is not None else client.get_random_node()
        groups.setdefault(node.name, (node, []))[1].append(index)
    replies: list[Any] = [None] * len(commands)
    sent: list[tuple[Any, Any, list[int]]] = []
    try:
        for node, indices in groups.values():
            pool = client.get_redis_connection(node).connection_pool
            connection = pool.get_connection()
            sent.append((pool, connection, indices))
            connection.send_packed_command(
                [b"".join(hiredis.pack_command(tuple(commands[i])) for i in indices)], check_health=False)
        for _pool, connection, indices in sent:
            for i in indices:
                try:
                    replies[i] = connection.read_response()
                except redis.ResponseError as error:
                    replies[i] = error
    except BaseException as error:
        for _pool, connection, _ in sent:
            connection.disconnect()
        if isinstance(error, OUTAGE_ERRORS):
            with contextlib.suppress(Exception):  # a failed node: learn the new slot map for the next call
                nodes.initialize()
        raise
    finally:
        for pool, connection, _ in sent:
            pool.release(connection)
    for i, reply in enumerate(replies):
        if isinstance(reply, _REDIRECTED):
            try:
                replies[i] = client.execute_command(*commands[i])
            except redis.ResponseError as error:
                replies[i] = error
    return replies


class RedisGateway:
    """The service's clients - request reads, writes, background work (poller, cache tracking), model loads -
    and the request path's breaker (background work has no part in it)."""

    def __init__(self, settings: Settings) -> None:
        connect = settings.redis_connect_timeout_ms / 1000.0
        cluster = self.cluster = settings.redis_cluster
        # In a cluster, reads get one retry (a failover's new primary is found at once; a slow one falls back)
        # and writes and loads three with backoff, so that a promotion of a replica costs no 5xx.
        self.reads = make_client(settings.redis_url, settings.redis_timeout_ms / 1000.0, connect,
                                 cluster=cluster, retries=1)
        self.writes = make_client(settings.redis_url, settings.redis_write_timeout_ms / 1000.0,
                                  max(connect, settings.redis_write_timeout_ms / 1000.0), cluster=cluster, retries=3)
        self.loads = make_client(settings.redis_url, settings.redis_load_timeout_s,
                                 max(connect, min(settings.redis_load_timeout_s, 2.0)), cluster=cluster, retries=3)
        background = max(1.0, settings.redis_write_timeout_ms / 1000.0)
        self.background = make_client(settings.redis_url, background, max(connect, background), cluster=cluster,
                                      retries=3)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (which talks to Redis) under the breaker; outages and Redis errors -> ``Unavailable``."""
        if not self.breaker.allow():
            raise Unavailable("Redis is unavailable (circuit open); try again shortly")
        try:
            result = fn()
        except OUTAGE_ERRORS as exc:
            self.breaker.failure()
            raise Unavailable(f"Redis is unavailable: {type(exc).__name__}") from None
        except (redis.RedisError, *CLUSTER_ERRORS) as exc:
            raise Unavailable(f"Redis error: {type(exc).__name__}") from None
        self.breaker.success()
        return result

    def ping(self) -> bool:
        """Reachability for /readyz (under the breaker, so a dead Redis answers at once)."""
        try:
            return bool(self.call(self.reads.ping))
        except Unavailable:
            return False

    def close(self) -> None:
        for client in (self.reads, self.writes, self.background, self.loads):
            client.close()
