"""Schedules: declares the ``cron`` actor options read by ``actors scheduler``."""

from __future__ import annotations

from typing import ClassVar

from actors.middleware.base import Middleware


class Schedules(Middleware):
    """Lets ``@actor(cron="0 2 * * *")`` declare a schedule (see `actors.scheduler`).

    It has no hooks: the scheduler process (``actors scheduler MODULE``) reads the options of
    the declared actors and enqueues their ticks.

    Actor options:
        cron: A cron expression; the actor is sent, without arguments, at every tick.
        cron_tz: The time zone the expression is read in (IANA name, default UTC).
    """

    actor_options: ClassVar[frozenset[str]] = frozenset({"cron", "cron_tz"})
