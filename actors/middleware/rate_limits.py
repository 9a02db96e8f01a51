"""Rate limits: concurrency and rate caps shared by every worker through the backend."""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from actors import registry
from actors.delivery import Outcome
from actors.errors import ConfigurationError, RateLimitExceeded, SkipMessage
from actors.middleware.base import Middleware

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.backends.base import Backend
    from actors.broker import Broker
    from actors.delivery import Delivery
    from actors.worker import Worker

DEFAULT_SLOT_TTL = 30.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([smhd])\s*$")


def parse_rate(text: str) -> tuple[int, float]:
    """Parse ``"100/m"`` (also ``/s``, ``/h``, ``/d``, ``"5/10s"``) into (limit, window seconds).

    Raises:
        ConfigurationError: `text` is not of that form.
    """
    found = _RATE.match(text) if isinstance(text, str) else None
    if found is None or int(found[1]) < 1:
        raise ConfigurationError(
            f"rate_limit must look like '100/m' (per s, m, h, d, or '5/10s'), not {text!r}"
        )
    return int(found[1]), float(found[2] or 1) * _UNITS[found[3]]


class ConcurrencyLimiter:
    """At most `limit` holders of `key` at once, across every process using the backend.

    Usable inside an actor::

        api_slots = actors.ConcurrencyLimiter("partner-api", 4)

        @actors.actor
        def sync_partner(order_id: str) -> None:
            with api_slots:  # RateLimitExceeded if 4 are busy: the message is put back
                call_partner(order_id)

    A slot expires `ttl` seconds after it was taken, so a holder that died cannot keep it
    forever; hold a slot for less than `ttl` (default 30 s).

    Args:
        key: What is limited (shared by every limiter with the same key).
        limit: How many holders at once.
        ttl: Seconds after which an unreleased slot frees itself.
        retry_after: The wait reported when every slot is busy, in seconds (default 1);
            holders usually release long before their slots would expire.
        backend: Where slots live (default: `actors.get_backend()` at first use).
    """

    def __init__(
        self,
        key: str,
        limit: int,
        *,
        ttl: float = DEFAULT_SLOT_TTL,
        retry_after: float = 1.0,
        backend: Backend | None = None,
    ) -> None:
        if limit < 1:
            raise ConfigurationError(f"a concurrency limit must be >= 1, not {limit!r}")
        self.key, self.limit, self.ttl, self.retry_after = key, limit, ttl, retry_after
        self._backend = backend
        self._held = threading.local()

    def acquire(self) -> str:
        """Take a slot and return its holder token.

        Raises:
            RateLimitExceeded: Every slot is held; its `retry_after` is the limiter's
                `retry_after`, or sooner if the oldest slot expires sooner.
        """
        backend = self._backend or registry.get_backend()
        holder = os.urandom(8).hex()
        wait = backend.acquire_slot(self.key, holder, self.limit, self.ttl)
        if wait > 0:
            raise RateLimitExceeded(self.key, min(wait, self.retry_after))
        return holder

    def release(self, holder: str) -> None:
        """Free the slot `holder` took."""
        (self._backend or registry.get_backend()).release_slot(self.key, holder)

    def __enter__(self) -> str:
        holder = self.acquire()
        self._held.__dict__.setdefault("stack", []).append(holder)
        return holder

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release(self._held.stack.pop())


class RateLimiter:
    """At most `limit` acquisitions of `key` in any sliding window of `window` seconds.

    Usable inside an actor: ``with RateLimiter("sms", "10/s"): send_sms(...)``, or call
    `hit()`. Over the limit it raises `actors.RateLimitExceeded`, which the `RateLimits`
    middleware turns into a delayed retry that spends no retry.

    Args:
        key: What is limited.
        rate: ``"100/m"`` style text, or the number of acquisitions per `window`.
        window: Seconds (when `rate` is a number).
        backend: Where the counter lives (default: `actors.get_backend()` at first use).
    """

    def __init__(
        self,
        key: str,
        rate: str | int,
        *,
        window: float = 1.0,
        backend: Backend | None = None,
    ) -> None:
        self.key = key
        self.limit, self.window = parse_rate(rate) if isinstance(rate, str) else (rate, window)
        self._backend = backend

    def hit(self) -> None:
        """Count one acquisition.

        Raises:
            RateLimitExceeded: The window is full; `retry_after` is when a place frees.
        """
        backend = self._backend or registry.get_backend()
        wait = backend.hit_rate(self.key, self.limit, self.window)
        if wait > 0:
            raise RateLimitExceeded(self.key, wait)

    def __enter__(self) -> None:
        self.hit()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one actor, parsed from its options."""

    max_concurrency: int | None = None
    concurrency_key: Callable[..., Any] | None = None
    rate: tuple[int, float] | None = None

    @classmethod
    def of(cls, options: Callable[[str], Any]) -> Limits:
        """Read and check the options through `options(name)`.

        Raises:
            ConfigurationError: An option has a bad value.
        """
        concurrency = options("max_concurrency")
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            raise ConfigurationError(f"max_concurrency must be an int >= 1, not {concurrency!r}")
        key = options("concurrency_key")
        if key is not None and not callable(key):
            raise ConfigurationError("concurrency_key must be a callable of the actor's arguments")
        rate = options("rate_limit")
        return cls(concurrency, key, None if rate is None else parse_rate(rate))

    @property
    def active(self) -> bool:
        """Whether any limit applies."""
        return self.max_concurrency is not None or self.rate is not None


class RateLimits(Middleware):
    """Caps how many messages of an actor run at once and how often, across all workers.

    State lives in the backend (`actors.get_backend()`): Redis makes the limits global across
    processes and machines; the memory backend limits one process. A message over its limit
    is not run: it is put back on the broker with a delay (until the rate window frees, or an
    estimate of when a concurrency slot frees), spending no retry; nothing waits in a loop.
    `RateLimitExceeded` raised by a `ConcurrencyLimiter` or `RateLimiter` inside an actor is
    handled the same way.

    Held concurrency slots are refreshed every ``slot_ttl / 3`` seconds while their actor runs;
    a slot whose worker died expires after ``slot_ttl`` seconds.

    Actor options:
        max_concurrency: At most this many messages of the actor run at once (default None).
        concurrency_key: ``f(*args, **kwargs) -> str``: limit per key instead of per actor.
        rate_limit: ``"100/m"`` style (per ``s``, ``m``, ``h``, ``d``, or ``"5/10s"``):
            at most this many starts in any sliding window (default None).

    Args:
        slot_ttl: Seconds before a slot that is no longer refreshed expires (default 30).
        min_defer: Shortest delay when putting a message back, in seconds (default 0.05).
        max_defer: Longest delay when putting a message back, in seconds (default 10).
        rng: Random source for the jitter of delays (injectable for tests).
    """

    actor_options: ClassVar[frozenset[str]] = frozenset(
        {"max_concurrency", "concurrency_key", "rate_limit"}
    )

    def __init__(
        self,
        *,
        slot_ttl: float = DEFAULT_SLOT_TTL,
        min_defer: float = 0.05,
        max_defer: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self._slot_ttl = slot_ttl
        self._min_defer, self._max_defer = min_defer, max_defer
        self._rng = rng or random.Random()
        self._limits: dict[str, Limits] = {}
        self._held: dict[Delivery, tuple[str, str]] = {}
        self._durations: dict[str, float] = {}  # actor -> moving average of run time
        self._started: dict[Delivery, float] = {}
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    # -- declaration and lifecycle --------------------------------------------------------------

    def after_declare_actor(self, broker: Broker, actor: Actor[Any, Any]) -> None:
        """Check the actor's limit options early (at its first use)."""
        self._limits[actor.actor_name] = Limits.of(actor.options.get)

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Start refreshing held slots."""
        if self._refresher is None or not self._refresher.is_alive():
            self._stop.clear()
            self._refresher = threading.Thread(
                target=self._refresh_held, name="actors-slot-refresh", daemon=True
            )
            self._refresher.start()

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Stop refreshing held slots."""
        self._stop.set()

    def _refresh_held(self) -> None:
        while not self._stop.wait(self._slot_ttl / 3):
            held = list(self._held.values())
            if held:
                registry.get_backend().refresh_slots(held, self._slot_ttl)

    # -- per message ----------------------------------------------------------------------------

    def _limits_of(self, delivery: Delivery) -> Limits:
        actor = delivery.actor
        message = delivery.message
        if actor is None or message is None:
            return Limits()
        if not message.options or not message.options.keys() & self.actor_options:
            cached = self._limits.get(actor.actor_name)
            if cached is None:
                cached = self._limits[actor.actor_name] = Limits.of(actor.options.get)
            return cached
        return Limits.of(delivery.option)

    def before_process_message(self, broker: Broker, delivery: Delivery) -> None:
        """Take a concurrency slot and a rate place, or put the message back and skip it."""
        limits = self._limits_of(delivery)
        if not limits.active:
            return
        assert delivery.actor is not None and delivery.message is not None
        name = delivery.actor.actor_name
        backend = registry.get_backend()
        if limits.max_concurrency is not None:
            key = _concurrency_key(name, limits.concurrency_key, delivery)
            holder = f"{delivery.message_id}:{os.urandom(4).hex()}"
            wait = backend.acquire_slot(key, holder, limits.max_concurrency, self._slot_ttl)
            if wait > 0:
                self._defer(delivery, self._durations.get(name, self._min_defer), wait)
            self._held[delivery] = (key, holder)
            self._started[delivery] = time.monotonic()
        if limits.rate is not None:
            wait = backend.hit_rate(name, *limits.rate)
            if wait > 0:
                self._release(delivery)
                self._defer(delivery, wait, wait)

    def _defer(self, delivery: Delivery, expected: float, ceiling: float) -> None:
        base = min(max(expected, self._min_defer), max(ceiling, self._min_defer), self._max_defer)
        delivery.defer(base * self._rng.uniform(1.0, 1.5))
        raise SkipMessage

    def after_process_message(
        self,
        broker: Broker,
        delivery: Delivery,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Free the slot; put back a message whose actor hit a limiter."""
        started = self._started.pop(delivery, None)
        if started is not None and delivery.actor is not None:
            name = delivery.actor.actor_name
            took = time.monotonic() - started
            self._durations[name] = 0.8 * self._durations.get(name, took) + 0.2 * took
        self._release(delivery)
        if isinstance(exception, RateLimitExceeded) and delivery.outcome is Outcome.ACK:
            wait = min(max(exception.retry_after, self._min_defer), self._max_defer)
            delivery.defer(wait * self._rng.uniform(1.0, 1.5))

    def after_skip_message(self, broker: Broker, delivery: Delivery) -> None:
        """Free the slot of a message that a later middleware skipped."""
        self._started.pop(delivery, None)
        self._release(delivery)

    def _release(self, delivery: Delivery) -> None:
        held = self._held.pop(delivery, None)
        if held is not None:
            registry.get_backend().release_slot(*held)


def _concurrency_key(name: str, key_of: Callable[..., Any] | None, delivery: Delivery) -> str:
    if key_of is None:
        return name
    message = delivery.message
    assert message is not None
    return f"{name}:{key_of(*message.args, **message.kwargs)}"
