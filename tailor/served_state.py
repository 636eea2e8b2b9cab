"""What the running service knows beyond a model directory, read from its Redis by the batch commands
(``tailor audience``, ``tailor recommend``) so that their answers leave out what the API leaves out."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from tailor.errors import CliError

if TYPE_CHECKING:
    import redis

    from scoring.artifact import Artifact

T = TypeVar("T")


def read_redis(redis_url: str | None, flag: str, read: Callable[[redis.Redis], T]) -> T:
    """``read(client)`` on the Redis of ``redis_url`` (default ``$REDIS_URL``, then the local default); a
    Redis that cannot be reached or read is a one-line error naming ``flag`` and the (masked) URL."""
    import redis

    from redis_state.versions import connect

    client = connect(redis_url)
    try:
        return read(client)
    except (redis.RedisError, ValueError) as exc:
        raise CliError(f"{flag}: cannot read from {redis_label(redis_url)}: {exc}") from None
    finally:
        client.close()


def redis_label(redis_url: str | None) -> str:
    """The URL that ``redis_url`` resolves to, password masked, for messages."""
    from settings import DEFAULT_REDIS_URL, mask_url

    return mask_url(redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)


def deactivated_items(artifact: Artifact, client: redis.Redis) -> set[int]:
    """Item indices the service never answers: the catalogue's inactive items and those deactivated with
    ``PATCH /v1/items/{id}`` (the service's own rule, ``service.domain.deactivations``)."""
    from redis_state import keys
    from service.domain.deactivations import inactive_items, parse_overrides

    overrides = parse_overrides(client.hgetall(keys.ITEM_OVERRIDES))
    catalogue = (k for k, item in enumerate(artifact.items) if item.get("active") is False)
    index = {str(item_id): k for k, item_id in enumerate(artifact.item_ids)}
    return inactive_items(catalogue, overrides, index)
