"""A small client of RabbitMQ's management HTTP API (listing queues), on urllib."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from actors.brokers.rabbitmq._settings import quote_vhost
from actors.errors import BrokerConnectionError, BrokerError

if TYPE_CHECKING:
    from actors.brokers.rabbitmq._settings import RabbitmqSettings


class ManagementApi:
    """Reads queue lists from the management plugin (``rabbitmq_management``, port 15672)."""

    def __init__(self, settings: RabbitmqSettings, *, timeout: float = 10.0) -> None:
        self.base, user, password = settings.management_base()
        self._vhost = settings.vhost
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._auth = f"Basic {token}"
        self._timeout = timeout

    def queues(self) -> list[dict[str, Any]]:
        """Every queue of the broker's vhost, with its name and message counts."""
        columns = "name,messages,messages_ready,messages_unacknowledged"
        found = self._get(f"/api/queues/{quote_vhost(self._vhost)}?columns={columns}")
        return list(found) if isinstance(found, list) else []

    def _get(self, path: str) -> Any:
        request = urllib.request.Request(self.base + path, headers={"Authorization": self._auth})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise BrokerError(
                f"management API {self.base}{path} answered {exc.code} {exc.reason}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise BrokerConnectionError(
                f"RabbitMQ management API at {self.base} is not reachable ({exc}); enable it with "
                "`rabbitmq-plugins enable rabbitmq_management` or pass management_url="
            ) from exc
