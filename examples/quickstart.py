"""Quickstart: a worker processing example messages.

Run it with ``scripts/demo`` (or ``python -m examples.quickstart``). It starts
``actors worker examples.quickstart`` against the local RabbitMQ, sends a few messages to a
sync and an async actor, waits until the queue is drained and stops the worker. When no
RabbitMQ answers it says so and runs everything in this process on the in-memory broker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import actors

RABBITMQ_URL = os.environ.get("ACTORS_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
QUEUE = "quickstart"


def say(line: str) -> None:
    """Print one whole line: `print` writes the text and the newline apart, so lines from
    several worker threads could run together."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


@actors.actor(queue=QUEUE)
def count_words(text: str) -> int:
    """A sync actor: runs on the worker's thread pool."""
    words = len(text.split())
    say(f"count_words: {words} words in {text!r}")
    return words


@actors.actor(queue=QUEUE, priority=5)
async def greet(name: str) -> str:
    """An async actor: runs on the worker's event loop."""
    await asyncio.sleep(0.05)
    say(f"greet: hello, {name}!")
    return f"hello, {name}"


def send_examples() -> int:
    """Send the example messages; return how many."""
    sentences = ["the quick brown fox", "jumps over", "the lazy dog"]
    for sentence in sentences:
        count_words.send(sentence)
    for name in ("Ada", "Grace", "Linus"):
        greet.send(name)
    count_words.send_with_options(args=("this one waits a second",), delay=1.0)
    return len(sentences) + 3 + 1


def rabbitmq_answers(url: str) -> bool:
    """Tell whether something accepts TCP connections at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


def run_on_rabbitmq(url: str) -> None:
    """Start a worker process on RabbitMQ, send the examples, wait, stop the worker."""
    from actors.settings import broker_from_url

    broker = actors.set_broker(broker_from_url(url))
    print(f"quickstart: using RabbitMQ at {urlsplit(url).hostname}:{urlsplit(url).port or 5672}")
    worker = subprocess.Popen(
        [sys.executable, "-m", "actors", "worker", "examples.quickstart", "-p", "1", "-t", "4",
         "--broker", url],
    )  # fmt: skip
    try:
        sent = send_examples()
        print(f"quickstart: sent {sent} messages; waiting for the worker to drain {QUEUE!r}")
        broker.join(QUEUE, timeout=60)
        print("quickstart: all messages processed; stopping the worker")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        broker.close()
    print(f"quickstart: worker exited with code {worker.returncode}")


def run_in_memory() -> None:
    """Run worker and producer in this process on the in-memory broker."""
    from actors.brokers.memory import MemoryBroker

    print(
        f"quickstart: no RabbitMQ answers at {RABBITMQ_URL} - falling back to the in-memory "
        "broker (worker and producer in this process; nothing survives a restart).\n"
        "            Start RabbitMQ (rabbitmq-server -detached) to run on a real broker."
    )
    broker = actors.set_broker(MemoryBroker())
    worker = actors.Worker(broker, threads=4)
    worker.start()
    try:
        sent = send_examples()
        print(f"quickstart: sent {sent} messages")
        broker.join(QUEUE, timeout=30)
        print("quickstart: all messages processed")
    finally:
        worker.stop()


def main() -> None:
    """Run the example on RabbitMQ if it answers, else in memory."""
    if RABBITMQ_URL.startswith("amqp") and rabbitmq_answers(RABBITMQ_URL):
        run_on_rabbitmq(RABBITMQ_URL)
    else:
        run_in_memory()


if __name__ == "__main__":
    main()
