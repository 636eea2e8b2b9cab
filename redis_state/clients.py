"""How every Redis client of Tailor is made: one Redis node (the default) or a Redis Cluster.

``TAILOR_REDIS_CLUSTER=true`` turns ``REDIS_URL`` into the address of any node of a cluster: the client then
is redis-py's ``RedisCluster``, which learns the slot map from that node, sends each command to the primary
owning its key's slot, follows ``MOVED`` / ``ASK`` redirections (a failover, a resharding) and splits its
pipelines per node. Keys used together share a hash tag (``redis_state.keys``), so no command or script ever
spans two slots.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from settings import ConfigError, setting_value

#: Errors of a cluster client that mean "the cluster is not (yet) usable": no node answered the slot map,
#: or a slot is not covered. ``RedisClusterException`` is not a ``RedisError``.
CLUSTER_ERRORS = (RedisClusterException,)

AnyRedis = redis.Redis | RedisCluster


def cluster_mode(environ: Mapping[str, str] | None = None) -> bool:
    """``TAILOR_REDIS_CLUSTER`` parsed (``ConfigError`` naming it on a bad value)."""
    return bool(setting_value("TAILOR_REDIS_CLUSTER", os.environ if environ is None else environ))


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def make_redis(url: str, *, cluster: bool, socket_timeout: float, socket_connect_timeout: float,
               retries: int = 0, **kwargs: Any) -> AnyRedis:
    """A client for ``url``: a plain ``Redis`` or, with ``cluster``, a ``RedisCluster`` bootstrapped from
    that node.

    ``retries``: how often a cluster client repeats a command after a connection error or a timeout (with a
    short exponential backoff, refreshing the slot map in between), which is what carries requests over a
    failover; redirections (``MOVED`` / ``ASK``) are always followed. A single-node client never retries on its
    own (``Retry(NoBackoff(), 0)``): retries are the caller's breaker's job.
    """
    if not cluster:
        return redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                    socket_connect_timeout=socket_connect_timeout,
                                    retry=Retry(NoBackoff(), 0), **kwargs)
    if url.startswith("unix:"):
        raise ConfigError("TAILOR_REDIS_CLUSTER=true needs a redis:// or rediss:// REDIS_URL (a node's address), "
                          "not a Unix socket")
    kwargs.pop("health_check_interval", None)
    return RedisCluster.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries), require_full_coverage=True,
        # The nodes announce the addresses they were configured with; a managed cluster behind one DNS name
        # still announces reachable node addresses, so the discovered nodes replace the bootstrap one.
        dynamic_startup_nodes=True, **kwargs,
    )
