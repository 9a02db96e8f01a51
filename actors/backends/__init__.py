"""Shared-state backends (results, rate limits, status, schedules, unique locks)."""
