"""The Redis broker (``redis://``, ``rediss://``): streams with consumer groups; see docs/redis.md.

Needs the ``redis`` extra: ``pip install 'actors-runtime[redis]'``.
"""

from actors.brokers.redis._broker import RedisBroker
from actors.brokers.redis._consumer import RedisConsumer, RedisDelivery

__all__ = ["RedisBroker", "RedisConsumer", "RedisDelivery"]
