"""Middleware: the base class and the built-in stack.

The default stack, in order (``before_*`` hooks run top-down, ``after_*`` bottom-up, so the
last middleware sits closest to the actor):

=======================  ========================================================================
`AgeLimit`               ``max_age``: dead-letter messages too old to run, before anything else
`Callbacks`              ``on_success``, ``on_failure``: enqueue callback actors
`Results`                ``store_results``, ``result_ttl``: store return values and final errors
`Retries`                ``max_retries``, ``min_backoff``, ``max_backoff``, ``retry_when``,
                         ``throws``: retry failures with backoff, dead-letter when out of retries
`RateLimits`             ``max_concurrency``, ``concurrency_key``, ``rate_limit``: global limits
`ShutdownNotifications`  ``notify_shutdown``: tell actors their worker is stopping
`TimeLimit`              ``time_limit``: interrupt actors that run too long (innermost)
=======================  ========================================================================

The after-hooks of `RateLimits`, `ShutdownNotifications` and `TimeLimit` run before those of
`Retries`, so a put-back (limits, shutdown) is decided before `Retries` looks at an error;
`Results` and `Callbacks` run after `Retries` and so see the final outcome of the attempt.
`Prometheus` is not in the default stack: ``actors worker --metrics-port`` adds it.
"""

from __future__ import annotations

from actors.middleware.age_limit import AgeLimit
from actors.middleware.base import Middleware
from actors.middleware.callbacks import Callbacks
from actors.middleware.prometheus import Prometheus
from actors.middleware.rate_limits import ConcurrencyLimiter, RateLimiter, RateLimits
from actors.middleware.results import Results
from actors.middleware.retries import Retries
from actors.middleware.shutdown import ShutdownNotifications, worker_is_stopping
from actors.middleware.time_limit import TimeLimit


def default_middleware() -> list[Middleware]:
    """Return a fresh list of the default middleware, in stack order (see the table above)."""
    return [
        AgeLimit(),
        Callbacks(),
        Results(),
        Retries(),
        RateLimits(),
        ShutdownNotifications(),
        TimeLimit(),
    ]


__all__ = [
    "AgeLimit",
    "Callbacks",
    "ConcurrencyLimiter",
    "Middleware",
    "Prometheus",
    "RateLimiter",
    "RateLimits",
    "Results",
    "Retries",
    "ShutdownNotifications",
    "TimeLimit",
    "default_middleware",
    "worker_is_stopping",
]
