"""Lua scripts run by SHA, and several of them sent in one round trip (``run_scripts``)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis

from service.infrastructure.redis_client import send_commands


# -- Lua scripts ---------------------------------------------------------------------------------------
class Lua:
    """A Lua script run by SHA, loaded on first use (and again after a Redis restart).

    Unlike redis-py's ``Script`` inside a pipeline, batching calls (``run_scripts``) costs no extra
    ``SCRIPT EXISTS`` round trip: a ``NOSCRIPT`` answer is rare, and only the calls that got one are
    repeated after loading.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)


ScriptCall = tuple[Lua, Sequence[str], Sequence[Any]]


def run_scripts(client: redis.Redis, calls: Sequence[ScriptCall], then: Sequence[Sequence[Any]] = ()) -> list[Any]:
    """Run several scripts, then the plain commands ``then``, in one round trip (``send_commands``); their
    raw replies, in order.

    Scripts met with NOSCRIPT (a restarted or flushed Redis) are loaded and run again; any other error
    reply is raised.
    """
    replies = send_commands(client, [*(("EVALSHA", lua.sha, len(script_keys), *script_keys, *args)
                                       for lua, script_keys, args in calls), *then])
    for index, reply in enumerate(replies):
        if isinstance(reply, redis.exceptions.NoScriptError) and index < len(calls):
            lua, script_keys, args = calls[index]
            replies[index] = lua(client, script_keys, args)
        elif isinstance(reply, Exception):
            raise reply
    return replies
