"""Schedules: periodic messages from cron expressions or fixed intervals.

Declare them with ``actors.schedule(actor, cron="0 2 * * *" | every=seconds, ...)`` or
``@actors.actor(cron="*/5 * * * *")``, and run ``actors scheduler MODULE``. Several schedulers
may run at once (for availability): every tick has a deterministic time, and a scheduler
enqueues it only after winning its lease in the backend (``SET NX`` on ``<name>:<tick>``), so
each tick is enqueued once; the message id is derived from the name and tick too.

Catch-up: a scheduler enqueues the latest tick that is due and newer than the last tick any
scheduler enqueued (kept in the backend). After downtime, the missed ticks are therefore run
*once* (the latest of them, at once), never one per missed tick. A schedule seen for the first
time starts with its next tick.

Cron expressions are evaluated in the schedule's time zone (``tz="Europe/Paris"``; default
UTC), so ``0 2 * * *`` runs at 02:00 local time, across DST changes as croniter computes them.
Intervals (``every=``) tick on multiples of the interval since the Unix epoch, independent of
time zones: ``every=60`` runs at the start of each minute.
"""

from __future__ import annotations

import hashlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from actors import names, registry
from actors.actor import Actor
from actors.errors import ConfigurationError
from actors.message import Message

logger = logging.getLogger("actors.scheduler")

#: The longest a scheduler sleeps between two looks at the clock and the backend, seconds.
MAX_SLEEP = 1.0
_LEASE_MARGIN = 60.0


@dataclass(frozen=True, slots=True)
class Schedule:
    """A periodic message.

    Attributes:
        name: Unique name (``actors scheduler run NAME``).
        actor: The actor's name.
        cron: A cron expression (5 fields, or 6 with seconds), or None.
        every: An interval in seconds, or None.
        args: Positional arguments of every message.
        kwargs: Keyword arguments of every message.
        tz: The time zone that cron expressions are read in (IANA name, default UTC).
    """

    name: str
    actor: str
    cron: str | None = None
    every: float | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    tz: str = "UTC"

    def latest_tick(self, now: float) -> float:
        """The latest tick at or before `now` (Unix seconds)."""
        if self.every is not None:
            return math.floor(now / self.every) * self.every
        zone = ZoneInfo(self.tz)
        here = datetime.fromtimestamp(now, zone)
        before = _croniter(self, here).get_prev(datetime)
        after = _croniter(self, before).get_next(datetime)
        return float((after if after <= here else before).timestamp())

    def next_tick(self, now: float) -> float:
        """The first tick after `now` (Unix seconds)."""
        if self.every is not None:
            return (math.floor(now / self.every) + 1) * self.every
        here = datetime.fromtimestamp(now, ZoneInfo(self.tz))
        return float(_croniter(self, here).get_next(datetime).timestamp())

    def message(self, tick: float | None) -> Message[Any]:
        """The message of one tick (id derived from name and tick), or a fresh one (None)."""
        target = registry.get_actor(self.actor)
        message = target.message_with_options(args=self.args, kwargs=self.kwargs)
        if tick is not None:
            message.id = hashlib.sha256(f"{self.name}:{tick:.3f}".encode()).hexdigest()[:32]
        return message


def _croniter(schedule: Schedule, start: datetime) -> Any:
    try:
        from croniter import croniter
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigurationError(
            "cron schedules need the 'cron' extra: pip install 'actors-runtime[cron]'"
        ) from exc
    return croniter(schedule.cron or "", start)


def schedule(
    actor: Actor[Any, Any] | str,
    *,
    cron: str | None = None,
    every: float | timedelta | None = None,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
    tz: str = "UTC",
) -> Schedule:
    """Declare a periodic message of `actor`, run by ``actors scheduler``.

    Args:
        actor: The actor, or its name.
        cron: A cron expression (``"0 2 * * *"``); exclusive with `every`.
        every: An interval in seconds or a timedelta; exclusive with `cron`.
        args: Positional arguments of every message.
        kwargs: Keyword arguments of every message.
        name: The schedule's name (default: the actor's name).
        tz: The time zone of `cron` (IANA name, default UTC).

    Raises:
        ConfigurationError: Neither or both of `cron` and `every`, a bad expression or zone.
    """
    actor_name = actor if isinstance(actor, str) else actor.actor_name
    if (cron is None) == (every is None):
        raise ConfigurationError("schedule() takes cron= or every=, exactly one")
    interval = every.total_seconds() if isinstance(every, timedelta) else every
    if interval is not None and interval <= 0:
        raise ConfigurationError(f"every= must be positive seconds, not {every!r}")
    declared = Schedule(name or actor_name, actor_name, cron, interval, tuple(args),
                        dict(kwargs or {}), tz)  # fmt: skip
    _validate(declared)
    registry.declare_schedule(declared)
    return declared


def _validate(declared: Schedule) -> None:
    try:
        ZoneInfo(declared.tz)
        declared.next_tick(time.time())
    except (ValueError, KeyError, ImportError, OSError) as exc:
        raise ConfigurationError(f"schedule {declared.name!r}: {exc}") from exc


def declared_schedules() -> dict[str, Schedule]:
    """Every schedule of this process: `schedule()` calls and actors with a ``cron`` option."""
    found = {
        a.actor_name: Schedule(
            a.actor_name, a.actor_name, cron=a.options["cron"], tz=a.options.get("cron_tz", "UTC")
        )
        for a in registry.declared_actors().values()
        if a.options.get("cron")
    }
    found.update(registry.declared_schedules())
    return found


def find_schedule(name: str) -> Schedule:
    """Return the declared schedule `name`.

    Raises:
        ConfigurationError: There is none.
    """
    found = declared_schedules().get(name)
    if found is None:
        known = ", ".join(sorted(declared_schedules())) or "none"
        raise ConfigurationError(f"no schedule named {name!r} (declared: {known})")
    return found


# -- shared state (every scheduler sees it) -----------------------------------------------------


def _last_key(name: str) -> str:
    return f"{names.SCHEDULE_KEY_PREFIX}{name}:last"


def _disabled_key(name: str) -> str:
    return f"{names.SCHEDULE_KEY_PREFIX}{name}:disabled"


def _lease_key(name: str, tick: float) -> str:
    return f"{names.SCHEDULE_KEY_PREFIX}{name}:tick:{tick:.3f}"


def set_enabled(name: str, enabled: bool) -> None:
    """Enable or disable schedule `name` for every scheduler (kept in the backend)."""
    backend = registry.get_backend()
    if enabled:
        backend.delete_key(_disabled_key(name))
    else:
        backend.set_key(_disabled_key(name), "1", None)


def is_enabled(name: str) -> bool:
    """Tell whether schedule `name` is enabled (schedules are enabled unless disabled)."""
    return registry.get_backend().get_keys([_disabled_key(name)])[0] is None


def run_now(name: str) -> Message[Any]:
    """Enqueue a message of schedule `name` now, outside its ticks; return it."""
    message = find_schedule(name).message(None)
    registry.get_actor(message.actor).broker.enqueue(message)
    return message


@dataclass(frozen=True, slots=True)
class Entry:
    """A schedule as ``actors scheduler list`` shows it."""

    schedule: Schedule
    enabled: bool
    next_run: datetime
    last_run: datetime | None


def entries(now: float | None = None) -> list[Entry]:
    """Every declared schedule with its state and next run time (in its time zone)."""
    now = time.time() if now is None else now
    found = sorted(declared_schedules().values(), key=lambda s: s.name)
    keys = [k for s in found for k in (_disabled_key(s.name), _last_key(s.name))]
    values = registry.get_backend().get_keys(keys) if keys else []
    listed = []
    for index, each in enumerate(found):
        disabled, last = values[2 * index], values[2 * index + 1]
        zone = ZoneInfo(each.tz)
        next_run = datetime.fromtimestamp(each.next_tick(now), zone)
        last_run = datetime.fromtimestamp(float(last), zone) if last else None
        listed.append(Entry(each, disabled is None, next_run, last_run))
    return listed


class Scheduler:
    """Enqueues the ticks of schedules; run as many as you like, each tick goes out once.

    Args:
        schedules: What to run (default: every declared schedule, looked up at `run`).
        clock: Unix seconds (default `time.time`), injectable for tests.
    """

    def __init__(
        self,
        schedules: Sequence[Schedule] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._schedules = list(schedules) if schedules is not None else None
        self._clock = clock
        self._stop = threading.Event()

    def tick(self) -> list[Message[Any]]:
        """Enqueue every due tick this scheduler wins; return the messages it enqueued."""
        now = self._clock()
        found = self._schedules if self._schedules is not None else list(
            declared_schedules().values())  # fmt: skip
        backend = registry.get_backend()
        keys = [k for s in found for k in (_disabled_key(s.name), _last_key(s.name))]
        values = backend.get_keys(keys) if keys else []
        sent = []
        for index, each in enumerate(found):
            disabled, last = values[2 * index], values[2 * index + 1]
            due = each.latest_tick(now)
            if last is None:
                # first sight of this schedule: start with its next tick, not a past one
                backend.set_key(_last_key(each.name), f"{due:.3f}", None, only_if_absent=True)
            elif disabled is None and due > float(last):
                lease = each.next_tick(now) - due + _LEASE_MARGIN
                if backend.set_key(_lease_key(each.name, due), "1", lease, only_if_absent=True):
                    sent.append(self._enqueue(each, due))
                    backend.set_key(_last_key(each.name), f"{due:.3f}", None)
        return sent

    def _enqueue(self, each: Schedule, due: float) -> Message[Any]:
        message = each.message(due)
        broker = registry.get_actor(each.actor).broker
        broker.enqueue(message)
        broker.flush()  # confirmed before the tick is recorded as done
        logger.info("schedule %s: enqueued %s for %s", each.name, message, _iso(due))
        return message

    def run(self) -> None:
        """Tick until `stop` is called, sleeping until the next tick (at most `MAX_SLEEP`).

        A stopped scheduler stays stopped (`run` returns at once): make a new one to restart.
        """
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("scheduler tick failed; trying again")
            self._stop.wait(self._sleep_time())

    def _sleep_time(self) -> float:
        now = self._clock()
        found = self._schedules if self._schedules is not None else list(
            declared_schedules().values())  # fmt: skip
        upcoming = min((s.next_tick(now) for s in found), default=now + MAX_SLEEP)
        return min(MAX_SLEEP, max(0.0, upcoming - now) + 0.001)

    def stop(self) -> None:
        """Make `run` return (safe from a signal handler or another thread)."""
        self._stop.set()

    def run_until_signalled(self) -> None:
        """`run` in the main thread until SIGTERM or SIGINT, then return (``actors scheduler``)."""

        def on_signal(*_: object) -> None:
            # Event.set from a handler can deadlock on the Event's own lock, which the main
            # thread may hold inside Event.wait: set it from another thread instead.
            threading.Thread(target=self.stop, name="actors-scheduler-stop").start()

        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        logger.info("scheduler running %s", ", ".join(sorted(declared_schedules())) or "nothing")
        try:
            self.run()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        logger.info("scheduler stopped")


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")
