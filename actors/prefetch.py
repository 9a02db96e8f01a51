"""How many deliveries a worker takes ahead: a short stretch of its own work, by its rate.

A fixed prefetch trades speed against priorities. Each delivery taken ahead is one that a
higher-priority message arriving later waits behind, which argues for few (two per thread).
But RabbitMQ spends less per message when one ack covers several deliveries, and a worker
whose actors take a fraction of a millisecond then runs dry between acks: with 16 taken ahead,
a worker draining one-Redis-call actors ran 15-20 % slower, and RabbitMQ spent ~25 % more
per message, than with 64 to 128 (docs/benchmarks.md).

So the default prefetch is sized in time: the messages the worker gets through in `BUFFER`
seconds at the rate it has been going, never fewer than its floor (every thread busy and one
waiting for each) nor more than `CAP`. A high-priority message then waits behind at most
about `BUFFER` seconds of taken work, however short the actors are; slow actors keep the floor.

The rate is what the worker took, which the prefetch itself bounds (by the round trip from an
ack to the next deliveries). A broker over a slow link, where that round trip takes longer
than `BUFFER`, keeps the floor. While a change takes effect on RabbitMQ, the deliveries taken
under the old prefetch and the new one add up, until the old ones are settled.
"""

from __future__ import annotations

import math

#: Seconds of work a worker takes ahead at its recent rate.
BUFFER = 0.025
#: The most deliveries taken ahead, whatever the rate (bounds memory and redeliveries).
CAP = 128
#: Seconds between two looks at the rate.
WINDOW = 0.25
#: A new size is applied only when it differs from the current one by more than this share:
#: each change costs the broker a new consumer per queue.
SLACK = 0.25


class PrefetchSizer:
    """Picks the prefetch for a measured rate, between `floor` and `cap`.

    Args:
        floor: The fewest deliveries taken ahead (the worker's fixed-size default).
        cap: The most (at least `floor`).
        buffer: Seconds of work to take ahead at the measured rate.
    """

    def __init__(self, floor: int, *, cap: int = CAP, buffer: float = BUFFER) -> None:
        self.floor = max(1, floor)
        self.cap = max(self.floor, cap)
        self.buffer = buffer

    def size_for(self, rate: float) -> int:
        """The prefetch for `rate` messages per second."""
        return min(self.cap, max(self.floor, math.ceil(rate * self.buffer)))

    def resize(self, current: int, rate: float) -> int | None:
        """The new prefetch for `rate`, or None while `current` is close enough to it."""
        size = self.size_for(rate)
        if abs(size - current) <= current * SLACK:
            return None
        return size
