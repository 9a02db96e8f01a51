"""Registry of benchmarked systems: name -> module exposing ``SYSTEM`` (see base.py)."""

from __future__ import annotations

import importlib

from bench.systems.base import System

REGISTRY: dict[str, str] = {
    "actors": "bench.systems.actors_sys",
    "raw_pika": "bench.systems.raw_pika",
    "raw_aiopika": "bench.systems.raw_aiopika",
    "raw_redis": "bench.systems.raw_redis",
    "raw_link": "bench.systems.raw_link",
    "dramatiq": "bench.systems.dramatiq_sys",
    "celery": "bench.systems.celery_sys",
}


def load(name: str) -> System:
    module = importlib.import_module(REGISTRY[name])
    system: System = module.SYSTEM
    return system
