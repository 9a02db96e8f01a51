"""A module for the ``actors scheduler`` CLI tests (the schedule name comes from the test)."""

import os

import actors


@actors.actor(queue=os.environ.get("SCHEDULED_APP_QUEUE", "scheduled-app"))
def heartbeat(source: str) -> None:
    """Do nothing, periodically."""


actors.schedule(heartbeat, every=3600, args=("cli",), name=os.environ["SCHEDULED_APP_NAME"])
