"""RedisBroker: publishing, queue declaration, inspection and dead-letter operations."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from actors import names
from actors.broker import Broker, Consumer, DeadLetter, DeliveryHandler
from actors.brokers.redis._connection import call_with_deadline, check_durability, open_client
from actors.brokers.redis._scripts import Scripts
from actors.dead_letters import REPLAY_DROPPED, describe_dead_letter
from actors.encoding import Codec, Envelope
from actors.errors import ConfigurationError
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    import redis
    from redis.client import Pipeline

    from actors.backends.base import Backend

T = TypeVar("T")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CLAIM_AFTER = 30.0
DEFAULT_MAX_DELIVERIES = 3
DEFAULT_CONNECTION_TIMEOUT = 10.0

_REPLAY_BATCH = 500
_PRIORITIES = range(names.PRIORITY_LEVELS)


_URL_OPTIONS = frozenset({"namespace", "claim_after", "max_deliveries", "connection_timeout"})


def split_url_options(url: str) -> tuple[str, dict[str, str]]:
    """Split the broker's own query parameters off a Redis URL (redis-py refuses them)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in query if key in _URL_OPTIONS}
    rest = urlencode([(key, value) for key, value in query if key not in _URL_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), ours


def _option(
    given: float | timedelta | None, in_url: dict[str, str], name: str, default: float
) -> float:
    if given is None:
        try:
            return float(in_url.get(name, default))
        except ValueError:
            raise ConfigurationError(
                f"{name}={in_url[name]!r} in the URL is not a number"
            ) from None
    return given.total_seconds() if isinstance(given, timedelta) else float(given)


def _check(namespace: str, claim_after: float, max_deliveries: int) -> None:
    if not namespace or any(c in namespace for c in "*?[]{} "):
        raise ConfigurationError(f"namespace {namespace!r} must be non-empty, no glob chars")
    if claim_after <= 0:
        raise ConfigurationError(f"claim_after must be positive, not {claim_after}")
    if max_deliveries < 1:
        raise ConfigurationError(f"max_deliveries must be at least 1, not {max_deliveries}")


def entry_fields(headers: dict[str, Any], body: bytes) -> list[Any]:
    """The stream fields of a message, flat: its readable headers first, then the body."""
    flat: list[Any] = []
    for key, value in headers.items():
        flat += (key, value if isinstance(value, str | bytes | int | float) else str(value))
    flat += (names.REDIS_FIELD_BODY, body)
    return flat


class RedisBroker(Broker):
    """A broker on Redis streams (``redis://`` and ``rediss://`` URLs); see docs/redis.md.

    Each queue is ten streams (one per priority) with one consumer group, a sorted set of
    delayed messages, and a ``Q.DLQ`` stream. Delivery is at-least-once: an entry stays in the
    group's pending list until acknowledged, and one left unacknowledged longer than
    `claim_after` (its worker died) is claimed by another worker.

    Args:
        url: The Redis URL (default ``redis://127.0.0.1:6379/0``). The options below can also
            be given as query parameters (``redis://host/0?namespace=app&claim_after=10``),
            for configuration through ``ACTORS_BROKER_URL``; arguments win over the URL.
        namespace: Prefix of every key (default ``actors``), so that apps can share one Redis.
        claim_after: Seconds an in-flight message may go without a heartbeat before another
            worker takes it over (default 30). Live workers refresh theirs every third of it.
        max_deliveries: Deliveries after which a message that keeps killing its worker is
            dead-lettered with reason ``poison`` (default 3).
        connection_timeout: Seconds a producer keeps retrying while Redis is unreachable
            before raising `ConnectionFailed` (default 10).
        middleware: The middleware stack (default: the default stack).
        codec: How messages are encoded (default msgpack).

    Raises:
        ConfigurationError: An option is out of range or not a number.
    """

    schemes = ("redis", "rediss")

    def __init__(
        self,
        *,
        url: str = DEFAULT_URL,
        namespace: str | None = None,
        claim_after: float | timedelta | None = None,
        max_deliveries: int | None = None,
        connection_timeout: float | timedelta | None = None,
        middleware: Iterable[Middleware] | None = None,
        codec: Codec | None = None,
    ) -> None:
        super().__init__(middleware=middleware, codec=codec)
        self.url, in_url = split_url_options(url)
        self.namespace = namespace or in_url.get("namespace", names.REDIS_NAMESPACE)
        self.claim_after = _option(claim_after, in_url, "claim_after", DEFAULT_CLAIM_AFTER)
        self.max_deliveries = int(
            _option(max_deliveries, in_url, "max_deliveries", DEFAULT_MAX_DELIVERIES)
        )
        self.connection_timeout = _option(
            connection_timeout, in_url, "connection_timeout", DEFAULT_CONNECTION_TIMEOUT
        )
        _check(self.namespace, self.claim_after, self.max_deliveries)
        self.client = open_client(
            self.url,
            name=f"actors-producer:{self.namespace}",
            socket_timeout=self.connection_timeout,
        )
        self.scripts = Scripts.register(self.client)
        self._declared: set[str] = set()
        self._lock = threading.Lock()
        self._checked = False

    # -- keys -----------------------------------------------------------------------------------

    def stream_keys(self, queue: str) -> list[str]:
        """The ready streams of `queue`, indexed by priority (0..9)."""
        return [names.redis_stream_key(self.namespace, queue, p) for p in _PRIORITIES]

    def dead_letter_key(self, queue: str) -> str:
        """The dead-letter stream of `queue` (or of the queue that `queue` is the DLQ of)."""
        return names.redis_dead_letter_key(self.namespace, names.original_queue(queue))

    def delay_keys(self, queue: str) -> list[str]:
        """The delayed sorted set and the delayed messages stream of `queue`."""
        return [
            names.redis_delayed_key(self.namespace, queue),
            names.redis_delayed_messages_key(self.namespace, queue),
        ]

    def call(self, call: Callable[[], T], what: str) -> T:
        """Run a Redis call with the producer's bounded wait; see `call_with_deadline`."""
        return call_with_deadline(call, timeout=self.connection_timeout, what=what)

    # -- declaration ----------------------------------------------------------------------------

    def declare_queue(self, queue: str) -> None:
        if queue in self._declared:
            return
        self.check_server()
        self.call(lambda: self._create_groups(queue), f"declare queue {queue!r}")
        with self._lock:
            self._declared.add(queue)

    def _create_groups(self, queue: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(names.redis_queues_key(self.namespace), queue)
        for stream in self.stream_keys(queue):
            pipe.xgroup_create(stream, names.REDIS_GROUP, id="0", mkstream=True)
        for result in pipe.execute(raise_on_error=False):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result

    def forget_declared(self) -> None:
        """Forget which queues exist (after their keys vanished: a Redis without persistence
        restarted, or someone deleted them), so that the next use declares them again."""
        with self._lock:
            self._declared.clear()

    def check_server(self) -> None:
        """Warn once if Redis is configured so that it may lose queued messages."""
        with self._lock:
            if not self._checked:
                self._checked = check_durability(self.client, self.url)

    # -- publishing -----------------------------------------------------------------------------

    def _publish(self, envelope: Envelope, delay: float | None) -> None:
        fields = entry_fields(envelope.headers, envelope.body)
        if delay:
            self._schedule(envelope.queue, envelope.priority, fields, delay)
            return
        stream = names.redis_stream_key(self.namespace, envelope.queue, envelope.priority)
        self.call(lambda: xadd(self.client, stream, fields), "publish")

    def _schedule(self, queue: str, priority: int, fields: list[Any], delay: float) -> None:
        args = [round(delay * 1000), *fields, names.REDIS_FIELD_PRIORITY, priority]
        keys = self.delay_keys(queue)
        self.call(lambda: self.scripts.schedule(keys=keys, args=args), "publish a delayed message")

    def _publish_many(self, envelopes: Sequence[Envelope]) -> None:
        def publish_all() -> None:
            pipe = self.client.pipeline(transaction=False)
            for envelope in envelopes:
                stream = names.redis_stream_key(self.namespace, envelope.queue, envelope.priority)
                fields = entry_fields(envelope.headers, envelope.body)
                xadd(pipe, stream, fields)
            pipe.execute()

        # A retry after a lost connection may publish some messages twice (at-least-once).
        self.call(publish_all, f"publish {len(envelopes)} messages")

    def publish_raw(
        self, queue: str, body: bytes, headers: dict[str, Any] | None = None, *, priority: int = 0
    ) -> None:
        stream = names.redis_stream_key(self.namespace, queue, max(0, min(9, priority)))
        fields = entry_fields(headers or {}, body)
        self.call(lambda: xadd(self.client, stream, fields), "publish")

    # -- consuming ------------------------------------------------------------------------------

    def consume(
        self, queues: Sequence[str], *, prefetch: int, on_delivery: DeliveryHandler
    ) -> Consumer:
        from actors.brokers.redis._consumer import RedisConsumer

        dead = [q for q in queues if names.is_dead_letter_queue(q)]
        if dead:
            raise ConfigurationError(
                f"cannot consume dead-letter queues ({', '.join(dead)}): inspect them with "
                "dead_letters() or `actors dlq show`, move them back with replay_dead_letters()"
            )
        return RedisConsumer(self, list(queues), prefetch, on_delivery)

    # -- inspection and operations --------------------------------------------------------------

    def queue_depth(self, queue: str) -> int:
        if names.is_dead_letter_queue(queue):
            key = self.dead_letter_key(queue)
            return int(self.call(lambda: self.client.xlen(key), "count dead letters"))

        def count() -> int:
            pipe = self.client.pipeline(transaction=False)
            for stream in self.stream_keys(queue):
                pipe.xlen(stream)
            pipe.zcard(self.delay_keys(queue)[0])
            return sum(pipe.execute())

        # Acknowledged entries are deleted, so a stream's length is its ready + in-flight count.
        return self.call(count, f"count the messages of {queue!r}")

    def purge(self, queue: str) -> int:
        if names.is_dead_letter_queue(queue):
            key = self.dead_letter_key(queue)

            def drop() -> int:
                pipe = self.client.pipeline(transaction=True)
                pipe.xlen(key)
                pipe.delete(key)
                return int(pipe.execute()[0])

            return self.call(drop, f"purge {queue!r}")
        keys = [*self.stream_keys(queue), *self.delay_keys(queue)]
        return int(
            self.call(lambda: self.scripts.purge(keys=keys, args=[names.REDIS_GROUP]), "purge")
        )

    def dead_letters(self, queue: str, *, limit: int = 20) -> list[DeadLetter]:
        key = self.dead_letter_key(queue)
        entries: Any = self.call(lambda: self.client.xrange(key, count=limit), "read dead letters")
        return [describe_dead_letter(self, *split_fields(fields.items())) for _, fields in entries]

    def replay_dead_letters(
        self, queue: str, *, limit: int | None = None, actor: str | None = None
    ) -> int:
        queue = names.original_queue(queue)
        self.declare_queue(queue)
        keys = [self.dead_letter_key(queue), *self.stream_keys(queue)]
        moved, after = 0, "-"
        while limit is None or moved < limit:
            most = _REPLAY_BATCH if limit is None else min(_REPLAY_BATCH, limit - moved)
            args = [after, _REPLAY_BATCH, most, actor or "", names.HEADER_ACTOR,
                    names.REDIS_FIELD_PRIORITY, *REPLAY_DROPPED]  # fmt: skip
            reply: Any = self.call(
                lambda args=args: self.scripts.replay(keys=keys, args=args),  # type: ignore[misc]
                "replay dead letters",
            )
            done, last, scanned = reply
            moved += int(done)
            after = last.decode() if isinstance(last, bytes) else str(last)
            if int(scanned) < _REPLAY_BATCH:
                break
        return moved

    def dead_letter_queues(self) -> dict[str, int]:
        def depths() -> dict[str, int]:
            members: Any = self.client.smembers(self._queues_key)
            queues = sorted(q.decode() for q in members)
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                pipe.xlen(self.dead_letter_key(queue))
            counts = pipe.execute()
            return {names.dead_letter_queue(q): int(n) for q, n in zip(queues, counts, strict=True)}

        return self.call(depths, "list dead-letter queues")

    @property
    def _queues_key(self) -> str:
        return names.redis_queues_key(self.namespace)

    def default_backend(self) -> Backend:
        """A `RedisBackend` on the same Redis URL and under the same namespace."""
        from actors.backends.redis import RedisBackend

        return RedisBackend(url=self.url, namespace=self.namespace)

    def close(self) -> None:
        """Close the producer's connections (consumers have their own)."""
        self.client.close()


def xadd(client: redis.Redis | Pipeline, stream: str, fields: list[Any]) -> Any:
    """XADD `fields` (flat) to `stream` with a server-made id (skipping redis-py's dict API)."""
    return client.execute_command("XADD", stream, "*", *fields)  # type: ignore[no-untyped-call]


def split_fields(pairs: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, dict[str, Any]]:
    """Split stream fields into the body and the readable headers (decoded as text)."""
    body = b""
    headers: dict[str, Any] = {}
    for key, value in pairs:
        name = key.decode(errors="replace")
        if name == names.REDIS_FIELD_BODY:
            body = value
        else:
            headers[name] = value.decode(errors="replace")
    return body, headers
