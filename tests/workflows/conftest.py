"""Fixtures for workflow, status, cancel, unique and scheduler tests (shared with others)."""

from tests.backends.conftest import any_backend
from tests.middleware.conftest import backend, start_worker

__all__ = ["any_backend", "backend", "start_worker"]
