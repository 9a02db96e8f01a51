"""Middleware: the base class and the built-in stack.

The default stack, in order (``before_*`` hooks run top-down, ``after_*`` bottom-up, so the
last middleware sits closest to the actor):

=======================  ========================================================================
`Schedules`              ``cron``, ``cron_tz``: declare schedules (no hooks; ``actors scheduler``)
`AgeLimit`               ``max_age``: dead-letter messages too old to run, before anything else
`Status`                 ``track_status``: record each message's state for ``actors.status``
`Workflows`              ``pipe_ignore`` (+ internal ``pipe_*``, ``group*``): move pipelines and
                         groups on, fire chord callbacks once
`Callbacks`              ``on_success``, ``on_failure``: enqueue callback actors
`Results`                ``store_results``, ``result_ttl``: store return values and final errors
`Unique`                 ``unique_for``, ``unique_key``: drop duplicate sends while one is pending
`Retries`                ``max_retries``, ``min_backoff``, ``max_backoff``, ``retry_when``,
                         ``throws``: retry failures with backoff, dead-letter when out of retries
`Cancellation`           (none): skip cancelled messages, stop cancelled running ones
`RateLimits`             ``max_concurrency``, ``concurrency_key``, ``rate_limit``: global limits
`ShutdownNotifications`  ``notify_shutdown``: tell actors their worker is stopping
`TimeLimit`              ``time_limit``: interrupt actors that run too long (innermost)
=======================  ========================================================================

The after-hooks of `Cancellation`, `RateLimits`, `ShutdownNotifications` and `TimeLimit` run
before those of `Retries`, so a cancel or a put-back (limits, shutdown) is decided before
`Retries` looks at an error; `Unique`, `Results`, `Callbacks`, `Workflows` and `Status` run
after `Retries` and so see the final outcome of the attempt (`Workflows` after `Results`, so a
group's results are stored before it counts as complete).
`Prometheus` is not in the default stack: ``actors worker --metrics-port`` adds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.middleware.age_limit import AgeLimit
from actors.middleware.base import Middleware
from actors.middleware.callbacks import Callbacks
from actors.middleware.cancellation import Cancellation
from actors.middleware.rate_limits import ConcurrencyLimiter, RateLimiter, RateLimits
from actors.middleware.results import Results
from actors.middleware.retries import Retries
from actors.middleware.schedules import Schedules
from actors.middleware.shutdown import ShutdownNotifications, worker_is_stopping
from actors.middleware.status import Status
from actors.middleware.time_limit import TimeLimit
from actors.middleware.unique import Unique
from actors.middleware.workflows import Workflows

if TYPE_CHECKING:
    from actors.middleware.prometheus import Prometheus


def __getattr__(name: str) -> Any:
    # Not in the default stack (and it declares no actor option): loaded when first asked for.
    if name == "Prometheus":
        from actors.middleware.prometheus import Prometheus

        return Prometheus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_middleware() -> list[Middleware]:
    """Return a fresh list of the default middleware, in stack order (see the table above)."""
    return [
        Schedules(),
        AgeLimit(),
        Status(),
        Workflows(),
        Callbacks(),
        Results(),
        Unique(),
        Retries(),
        Cancellation(),
        RateLimits(),
        ShutdownNotifications(),
        TimeLimit(),
    ]


__all__ = [
    "AgeLimit",
    "Callbacks",
    "Cancellation",
    "ConcurrencyLimiter",
    "Middleware",
    "Prometheus",
    "RateLimiter",
    "RateLimits",
    "Results",
    "Retries",
    "Schedules",
    "ShutdownNotifications",
    "Status",
    "TimeLimit",
    "Unique",
    "Workflows",
    "default_middleware",
    "worker_is_stopping",
]
