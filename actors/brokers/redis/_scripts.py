"""The Lua scripts that make the Redis broker's read-then-write steps atomic.

Each script lives in a ``.lua`` file next to this module, with its KEYS and ARGV documented at
the top. redis-py runs them with EVALSHA and loads them again after a Redis restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import redis
from redis.commands.core import Script


def _source(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Scripts:
    """The broker's scripts, registered on one client (usable in its pipelines too)."""

    take: Script
    claim: Script
    heartbeat: Script
    move: Script
    schedule: Script
    replay: Script
    purge: Script

    @classmethod
    def register(cls, client: redis.Redis) -> Scripts:
        """Register every script on `client`."""
        return cls(
            **{name: client.register_script(_source(name)) for name in cls.__dataclass_fields__}
        )
