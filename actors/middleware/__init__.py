"""Middleware: the base class and the built-in stack.

The default stack, in order (``before_*`` hooks run top-down, ``after_*`` bottom-up):

======================  =============================================================
(none yet)
======================  =============================================================
"""

from __future__ import annotations

from actors.middleware.base import Middleware


def default_middleware() -> list[Middleware]:
    """Return a fresh list of the default middleware, in stack order."""
    return []


__all__ = ["Middleware", "default_middleware"]
