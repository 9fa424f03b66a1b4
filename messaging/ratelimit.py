"""Rate limits exact to the minute: a counter per limit and clock minute in Redis, taken atomically by a Lua
script, so any number of workers together never exceed the limit. What is not granted waits for the next
minute; nothing is dropped."""

from __future__ import annotations

import datetime
import functools

import redis
from django.conf import settings

_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used)
if grant <= 0 then return 0 end
redis.call('INCRBY', KEYS[1], grant)
redis.call('EXPIRE', KEYS[1], 180)
return grant
"""


@functools.cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)


@functools.cache
def _script() -> redis.commands.core.Script:
    return _client().register_script(_TAKE)


def take(name: str, wanted: int, *, per_minute: int, now: datetime.datetime) -> int:
    """Take up to `wanted` of the `per_minute` allowance of limit `name` in `now`'s minute; returns how many were
    granted (0 to `wanted`). Raises redis.RedisError when Redis is unreachable: the caller defers, never sends."""
    if wanted <= 0:
        return 0
    minute = int(now.timestamp()) // 60
    return int(_script()(keys=[f"scrm:rl:{name}:{minute}"], args=[wanted, per_minute]))


def used(names: list[str], *, now: datetime.datetime) -> dict[str, int]:
    """How much of each limit's allowance is used in `now`'s minute (one round trip)."""
    if not names:
        return {}
    minute = int(now.timestamp()) // 60
    values = _client().mget([f"scrm:rl:{name}:{minute}" for name in names])
    return {name: int(value or 0) for name, value in zip(names, values, strict=True)}


def next_window(now: datetime.datetime) -> datetime.datetime:
    """The start of the minute after `now`'s: when a limit's allowance is renewed."""
    return now.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)


def reset_clients() -> None:
    _script.cache_clear()
    _client.cache_clear()
