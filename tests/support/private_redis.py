"""A throw-away ``redis-server`` for tests that kill, restart or corrupt Redis.

Persistence is exactly what the constructor says: ``appendonly`` (AOF, fsync ``everysec`` or
``always``) or nothing at all (``save ""`` disables RDB snapshots), so a server without AOF is a
clean negative control that loses everything on any restart. The port stays the same across
restarts, so clients and proxies can reconnect. Start-up takes ~0.05 s on this machine.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from actors.testing import wait_until
from tests.support.net import LOCALHOST, free_port

REDIS_SERVER = "redis-server"


class PrivateRedis:
    """A private Redis on 127.0.0.1 with its data in a temp dir."""

    def __init__(self, *, appendonly: bool = True, fsync_always: bool = False) -> None:
        self.appendonly = appendonly
        self.fsync_always = fsync_always
        self.port = free_port()
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Redis URL of the private server, database 0."""
        return f"redis://{LOCALHOST}:{self.port}/0"

    @property
    def directory(self) -> Path:
        """The server's temp dir (config, data, log); kept across restarts, removed by ``stop``."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="actors-redis-"))
        return self._dir

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server (reusing the data dir after a restart) and wait until it answers."""
        if self.running:
            raise RuntimeError("PrivateRedis is already running")
        config = self.directory / "redis.conf"
        config.write_text("\n".join(self._config_lines()) + "\n")
        self._process = subprocess.Popen(
            [REDIS_SERVER, str(config)],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers_ping, timeout=timeout, message=f"redis-server on port {self.port}")
        return self

    def kill(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Send ``sig`` (SIGTERM: graceful shutdown; SIGKILL: crash) and wait for the exit."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(sig)
        self._process.wait(timeout=timeout)
        self._process = None

    def restart(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> None:
        """``kill(sig)`` then ``start()`` on the same port and data dir."""
        self.kill(sig, timeout)
        self.start(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down gracefully (SIGKILL if that times out) and remove the temp dir."""
        try:
            self.kill(signal.SIGTERM, timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL, timeout)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def client(self) -> redis.Redis:
        """A new redis-py client for this server."""
        return redis.Redis.from_url(self.url)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log, for failure messages."""
        return (self.directory / "redis.log").read_text(errors="replace")[-chars:]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _answers_ping(self) -> bool:
        """PING succeeds (not while loading the AOF); fail fast if the server died."""
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(
                f"redis-server exited {self._process.returncode}:\n{self.log_tail()}"
            )
        try:
            with redis.Redis(host=LOCALHOST, port=self.port, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def _config_lines(self) -> list[str]:
        """The redis.conf lines for this server."""
        return [
            f"bind {LOCALHOST}",
            f"port {self.port}",
            f"dir {self.directory}",
            "daemonize no",
            f"logfile {self.directory / 'redis.log'}",
            'save ""',
            "maxmemory-policy noeviction",
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f"appendfsync {'always' if self.fsync_always else 'everysec'}",
        ]
