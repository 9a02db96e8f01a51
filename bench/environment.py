"""What the report says about the machine and the versions, and the final cleanup."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from typing import Any

import psutil

from bench.common import amqp_delete, amqp_server_properties, redis_cleanup, redis_info
from bench.systems.base import System

EXTRA_PACKAGES = ("psutil", "hiredis", "msgpack")


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "nproc": affinity or os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_end": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _rabbitmqctl(*args: str, timeout: float = 60.0) -> str | None:
    try:
        out = subprocess.run(
            ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def rabbitmq_version() -> str:
    try:
        props = amqp_server_properties()
        text = f"{props.get('product', 'RabbitMQ')} {props.get('version', '?')}"
        if props.get("platform"):
            text += f" ({props['platform']})"
        return text
    except Exception as exc:
        out = _rabbitmqctl("version", timeout=30)
        return f"RabbitMQ {out.strip()}" if out else f"unknown ({exc!r})"


def redis_version() -> str:
    try:
        info = redis_info()
    except Exception as exc:
        return f"unknown ({exc!r})"
    return f"Redis {info.get('redis_version')} ({info.get('multiplexing_api', '')})"


def versions(systems: dict[str, System]) -> dict[str, str]:
    libs: dict[str, str] = {}
    for system in systems.values():
        libs.update(system.versions())
    for pkg in EXTRA_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            libs[pkg] = metadata.version(pkg)
    return dict(sorted(libs.items()))


def collect(systems: dict[str, System]) -> dict[str, Any]:
    return {
        "machine": machine(),
        "rabbitmq": rabbitmq_version(),
        "redis": redis_version(),
        "libraries": versions(systems),
    }


def cleanup_leftovers(run_id: str) -> list[str]:
    """Delete queues/exchanges/keys of this invocation that a crashed child left behind."""
    marker = f".{run_id}-"
    left: list[str] = []
    for kind in ("queues", "exchanges"):
        out = _rabbitmqctl(f"list_{kind}", "name", "--quiet", "--no-table-headers") or ""
        names = [line.strip() for line in out.splitlines() if marker in line]
        if names:
            left += [f"{kind[:-1]} {n}" for n in names]
            if kind == "queues":
                amqp_delete(queues=names)
            else:
                amqp_delete(exchanges=names)
    deleted = redis_cleanup(f"bench.*{marker}")
    if deleted:
        left.append(f"{deleted} Redis keys")
    return left
