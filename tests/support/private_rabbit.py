"""A throw-away RabbitMQ node for destructive fault tests.

``PrivateRabbit`` boots its own Erlang node (unique name ``actorsfault-<hex>@localhost``) on free
ports, with every data, log, config and cookie file in a temp dir, so ``stop_app``,
``close_all_connections`` and ``stop`` can never reach the machine's shared broker on 5672. Every
``rabbitmqctl`` call carries ``-n <node>`` and the private ``HOME`` (the private Erlang cookie).

The scripts in ``/usr/lib/rabbitmq/bin`` are run directly: Debian's ``/usr/sbin`` wrappers ``su`` to
the ``rabbitmq`` user when run as root, which resets ``HOME`` (so the private cookie is lost and
``rabbitmqctl`` cannot authenticate) and sends server output to ``/var/log/rabbitmq/startup_log``,
the shared node's log. ``RABBITMQ_CONF_ENV_FILE`` points at an empty private file so
``/etc/rabbitmq/rabbitmq-env.conf`` (which names the shared node) is never read.

Measured on this machine (Debian RabbitMQ 3.10.8 / Erlang 25, 2 shared cores, other work running):
``start`` 4.2-6.9 s (AMQP port open after ~4-4.5 s; ``await_startup`` adds ~0.7 s, mostly the Erlang
VM that ``rabbitmqctl`` itself boots), ``close_all_connections`` ~0.5 s, ``stop_app`` ~0.6 s,
``start_app`` ~1.5 s, ``stop`` ~1.7 s. Each ``rabbitmqctl`` call costs ~0.5-0.8 s on its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from actors.testing import wait_until
from tests.support.net import LOCALHOST, free_port, port_accepts

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


class RabbitCtlError(RuntimeError):
    """A ``rabbitmqctl`` call against the private node failed."""


class PrivateRabbit:
    """A private RabbitMQ node on 127.0.0.1, started and destroyed by the tests.

    ``consumer_timeout_ms`` and ``channel_tick_interval_ms`` (how often the consumer timeout is
    checked, 60 s by default) let timeout tests run in seconds; ``management`` enables the
    management plugin on ``management_port``.
    """

    def __init__(
        self,
        *,
        consumer_timeout_ms: int | None = None,
        channel_tick_interval_ms: int | None = None,
        management: bool = False,
    ) -> None:
        self.nodename = f"actorsfault-{secrets.token_hex(4)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.management_port = free_port() if management else None
        self.consumer_timeout_ms = consumer_timeout_ms
        self.channel_tick_interval_ms = channel_tick_interval_ms
        self.start_seconds: float | None = None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """AMQP URL of the private node (default vhost, guest user)."""
        return f"amqp://guest:guest@{LOCALHOST}:{self.port}/"

    @property
    def directory(self) -> Path:
        """The node's temp dir (data, logs, config); exists between ``start`` and ``stop``."""
        if self._dir is None:
            raise RuntimeError("PrivateRabbit is not started")
        return self._dir

    @property
    def process_group(self) -> int:
        """Process group of the launcher script and the Erlang VM (e.g. to SIGKILL the node)."""
        if self._process is None:
            raise RuntimeError("PrivateRabbit is not started")
        return self._process.pid

    def start(self, timeout: float = 60.0) -> Self:
        """Boot the node and wait until AMQP accepts and ``await_startup`` succeeds."""
        began = time.monotonic()
        self._dir = Path(tempfile.mkdtemp(prefix="actors-rabbit-"))
        self._write_config()
        log = (self._dir / "server-output.log").open("wb")
        with log:
            self._process = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                cwd=self._dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(
                self._amqp_ready,
                timeout=timeout,
                message=f"AMQP port {self.port} of {self.nodename}",
            )
            remaining = max(1, int(timeout - (time.monotonic() - began)))
            self.ctl("await_startup", "--timeout", str(remaining), timeout=remaining + 10)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl -n <node> *args`` against this node and return its stdout."""
        command = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, *args]
        result = subprocess.run(
            command,
            env=self._env(),
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RabbitCtlError(
                f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def close_all_connections(self, reason: str = "closed by test") -> None:
        """Close every client connection on this node (all vhosts)."""
        self.ctl("close_all_connections", "--global", reason)

    def stop_app(self, timeout: float = 60.0) -> None:
        """Stop the RabbitMQ application (the Erlang node stays up); AMQP stops accepting."""
        self.ctl("stop_app", timeout=timeout)
        wait_until(
            lambda: not port_accepts(self.port),
            timeout=timeout,
            message=f"port {self.port} to close",
        )

    def start_app(self, timeout: float = 60.0) -> None:
        """Start the RabbitMQ application again and wait until AMQP accepts."""
        self.ctl("start_app", timeout=timeout)
        wait_until(
            lambda: port_accepts(self.port), timeout=timeout, message=f"port {self.port} to accept"
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node (``rabbitmqctl stop``), kill leftovers and remove the temp dir."""
        if self._process is not None:
            self._stop_process(timeout)
            self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the node's console output, for failure messages."""
        text = (self.directory / "server-output.log").read_text(errors="replace")
        return text[-chars:]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _amqp_ready(self) -> bool:
        """Port check that fails fast, with the node's output, if the node died while booting."""
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(
                f"{self.nodename} exited with {self._process.returncode}:\n{self.log_tail()}"
            )
        return port_accepts(self.port)

    def _stop_process(self, timeout: float) -> None:
        """Ask the node to stop, wait for its launcher to exit, then SIGKILL its process group."""
        assert self._process is not None
        if self._process.poll() is None:
            try:
                self.ctl("stop", timeout=timeout)
                self._process.wait(timeout=timeout)
            except (RabbitCtlError, subprocess.TimeoutExpired):
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout=timeout)

    def _write_config(self) -> None:
        """Write rabbitmq.conf, advanced.config, enabled_plugins and an empty env file."""
        directory = self.directory
        (directory / "home").mkdir()
        (directory / "rabbitmq.conf").write_text("\n".join(self._config_lines()) + "\n")
        advanced = ""
        if self.channel_tick_interval_ms is not None:
            advanced = f"{{rabbit, [{{channel_tick_interval, {self.channel_tick_interval_ms}}}]}}"
        (directory / "advanced.config").write_text(f"[{advanced}].\n")
        plugins = "rabbitmq_management" if self.management_port is not None else ""
        (directory / "enabled_plugins").write_text(f"[{plugins}].\n")
        (directory / "rabbitmq-env.conf").write_text("")

    def _config_lines(self) -> list[str]:
        """The rabbitmq.conf lines for this node."""
        lines = [
            f"listeners.tcp.default = {LOCALHOST}:{self.port}",
            "loopback_users = none",
            "log.console = true",
            "log.file = false",
        ]
        if self.consumer_timeout_ms is not None:
            lines.append(f"consumer_timeout = {self.consumer_timeout_ms}")
        if self.management_port is not None:
            lines.append(f"management.tcp.ip = {LOCALHOST}")
            lines.append(f"management.tcp.port = {self.management_port}")
        return lines

    def _env(self) -> dict[str, str]:
        """Environment for the server and rabbitmqctl: nothing inherited from RABBITMQ_/ERL_."""
        directory = self.directory
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(directory / "home"),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS=LOCALHOST,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(directory / "mnesia"),
            RABBITMQ_LOG_BASE=str(directory / "log"),
            RABBITMQ_CONFIG_FILE=str(directory / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(directory / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(directory / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(directory / "rabbitmq-env.conf"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_ADDRESS=LOCALHOST,
        )
        return env
