"""Small helpers that the built-in middleware share for reading actor options."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from actors.errors import ConfigurationError


def seconds(value: Any, option: str) -> float | None:
    """Return an option given as seconds or a `timedelta` as float seconds (None stays None).

    Raises:
        ConfigurationError: `value` is neither, or negative.
    """
    kind = type(value)
    if (kind is float or kind is int) and value >= 0:  # the common case (read per message)
        return float(value)
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(f"{option} must be seconds (>= 0) or a timedelta, not {value!r}")
    return float(value)


def actor_name_of(target: Any, option: str) -> str:
    """Return the actor name of an actor object or name (``on_success=cb`` or ``"cb"``).

    Raises:
        ConfigurationError: `target` is neither.
    """
    if isinstance(target, str):
        return target
    name = getattr(target, "actor_name", None)
    if not isinstance(name, str):
        raise ConfigurationError(f"{option} must be an actor or an actor name, not {target!r}")
    return name
