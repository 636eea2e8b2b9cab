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

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

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


def make_client(url: str, timeout_s: float, connect_timeout_s: float) -> redis.Redis:
    """A client that never retries on its own: retries are the breaker's job, not a hidden loop.

    ``unix://`` URLs (a Redis on the same host) are accepted too; keep-alive applies to TCP only.
    """
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


class RedisGateway:
    """The service's clients - request reads, writes, background work (poller, cache tracking), model loads -
    and the request path's breaker (background work has no part in it)."""

    def __init__(self, settings: Settings) -> None:
        connect = settings.redis_connect_timeout_ms / 1000.0
        self.reads = make_client(settings.redis_url, settings.redis_timeout_ms / 1000.0, connect)
        self.writes = make_client(settings.redis_url, settings.redis_write_timeout_ms / 1000.0,
                                  max(connect, settings.redis_write_timeout_ms / 1000.0))
        self.loads = make_client(settings.redis_url, settings.redis_load_timeout_s,
                                 max(connect, min(settings.redis_load_timeout_s, 2.0)))
        background = max(1.0, settings.redis_write_timeout_ms / 1000.0)
        self.background = make_client(settings.redis_url, background, max(connect, background))
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
        except redis.RedisError as exc:
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
