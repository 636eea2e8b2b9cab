"""The connections whose reads Redis tracks for a ``CustomerCache`` (``service.infrastructure.customer_cache``):
each registers with the cache when it connects and reports being closed, and one registered under an older
subscriber is reconnected when checked out of its pool. Kept apart from the cache's own bookkeeping; they
are its collaborators and use its registration methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from service.infrastructure.customer_cache import CustomerCache


def tracked_class(base: type[redis.connection.AbstractConnection],
                   cache: CustomerCache) -> type[redis.connection.AbstractConnection]:
    """``base`` (TCP, unix socket or TLS) whose instances register with ``cache`` on connect and report
    being closed."""

    class TrackedConnection(base):  # type: ignore[valid-type, misc]
        tracked_as: int | None = None  # the cache generation whose subscriber this connection redirects to

        def on_connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            super().on_connect_check_health(*args, **kwargs)
            cache._track(self)

        def disconnect(self, *args: Any, **kwargs: Any) -> None:
            connected = self._sock is not None
            super().disconnect(*args, **kwargs)
            if connected:
                cache._lost(self)

    return TrackedConnection


class TrackedPool(redis.ConnectionPool):
    """Connections that Redis tracks for one ``CustomerCache``; one registered under an older subscriber is
    reconnected (and so registered again) when checked out."""

    def __init__(self, cache: CustomerCache, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.customer_cache = cache

    def get_connection(self, *args: Any, **kwargs: Any) -> redis.connection.AbstractConnection:
        cache = self.customer_cache
        connection = super().get_connection(*args, **kwargs)
        if connection.tracked_as != cache._generation and cache.ready:  # type: ignore[attr-defined]
            try:
                connection.disconnect()
                connection.connect()
            except BaseException:
                self.release(connection)
                raise
        client_id = cache._tracked.get(id(connection))
        cache._local.reader = None if client_id is None else (id(connection), client_id)
        return connection
