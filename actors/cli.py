"""The ``actors`` command line: parses arguments and calls the library, nothing more."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec

import click

import actors
from actors import registry
from actors._launch import configure_logging, exec_supervisor
from actors.errors import ActorsError
from actors.settings import ENV_BACKEND_URL, ENV_BROKER_URL, backend_from_url, broker_from_url
from actors.supervisor import EXIT_IMPORT_ERROR, import_error

if TYPE_CHECKING:
    from actors.broker import Broker

P = ParamSpec("P")

broker_option = click.option(
    "--broker",
    "broker_url",
    envvar=ENV_BROKER_URL,
    help="Broker URL: amqp://, amqps://, redis://, rediss:// or memory:// "
    f"(default: ${ENV_BROKER_URL}, else the broker the modules set).",
)


def import_modules(modules: tuple[str, ...], *, debug: bool) -> None:
    """Import the modules that declare actors; exit 2 with one clear line if one fails."""
    error = import_error(modules, debug=debug)
    if error is not None:
        click.echo(error, err=True)
        sys.exit(EXIT_IMPORT_ERROR)


@contextlib.contextmanager
def _broker(url: str | None) -> Iterator[Broker]:
    """The broker a command works on, closed when the command is done."""
    broker = broker_from_url(url) if url else registry.get_broker()
    try:
        yield broker
    finally:
        broker.close()


def _clear_errors(command: Callable[P, None]) -> Callable[P, None]:
    """Show an `ActorsError` as one line and exit 1, instead of a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except ActorsError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    return run


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"actors, version {actors.__version__}")
        ctx.exit()


@click.group()
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_show_version, help="Show the version and exit.")  # fmt: skip
def main() -> None:
    """actors: run and operate background workers."""


@main.command()
@click.argument("modules", nargs=-1, required=True)
@click.option(
    "-p",
    "--processes",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default=True,
    help="Worker processes to run (each restarted if it dies).",
)
@click.option(
    "-t",
    "--threads",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Threads per process for sync actors (async actors have their own slots).",
)
@click.option(
    "--fixed-threads",
    is_flag=True,
    help="Keep every thread running actors even while the process is bound by the GIL "
    "(by default fewer run then; all of them while actors wait on I/O).",
)
@click.option(
    "-Q",
    "--queues",
    multiple=True,
    help="Queues to consume (repeat or comma-separate; default: every actor's queue).",
)
@broker_option
@click.option(
    "--shutdown-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds in-flight messages get to finish on SIGTERM before they are returned.",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    default=None,
    help="Replace a worker process after it took this many messages.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    default=None,
    help="Serve Prometheus metrics of all worker processes on this port.",
)
@click.option(
    "--pid-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the supervisor's pid to this file.",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Log to this file instead of stderr.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log level.",
)
@click.option(
    "--watch",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Restart the workers when a .py file under PATH changes (dev).",
)
def worker(
    modules: tuple[str, ...],
    processes: int,
    threads: int,
    fixed_threads: bool,
    queues: tuple[str, ...],
    broker_url: str | None,
    shutdown_timeout: float,
    max_tasks_per_child: int | None,
    metrics_port: int | None,
    pid_file: str | None,
    log_file: str | None,
    log_level: str,
    watch: Path | None,
) -> None:
    """Run workers for the actors declared in MODULES (e.g. `actors worker app.tasks`).

    Exits 0 after SIGTERM or SIGINT once in-flight work finished or was returned; a second
    signal forces the exit. Exits 2 if a module cannot be imported.
    """
    exec_supervisor(
        {
            "modules": list(modules),
            "processes": processes,
            "threads": threads,
            "adaptive_threads": not fixed_threads,
            "queues": [q for group in queues for q in group.split(",") if q],
            "broker_url": broker_url,
            "shutdown_timeout": shutdown_timeout,
            "max_tasks": max_tasks_per_child,
            "metrics_port": metrics_port,
            "pid_file": str(Path(pid_file).resolve()) if pid_file else None,
            "log_file": str(Path(log_file).resolve()) if log_file else None,
            "log_level": log_level,
            "watch": str(watch.resolve()) if watch else None,
        }
    )


@main.group()
def dlq() -> None:
    """Inspect and manage dead-letter queues (Q.DLQ)."""


@dlq.command("list")
@broker_option
@_clear_errors
def dlq_list(broker_url: str | None) -> None:
    """List every dead-letter queue with its depth."""
    with _broker(broker_url) as broker:
        queues = broker.dead_letter_queues()
    if not queues:
        click.echo("no dead-letter queues")
    for name, depth in sorted(queues.items()):
        click.echo(f"{name}\t{depth}")


@dlq.command("show")
@click.argument("queue")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many dead letters to show.",
)
@broker_option
@_clear_errors
def dlq_show(queue: str, limit: int, broker_url: str | None) -> None:
    """Show the dead letters of QUEUE (its name, or its DLQ's name) without removing them."""
    from actors.names import original_queue

    with _broker(broker_url) as broker:
        letters = broker.dead_letters(original_queue(queue), limit=limit)
    for letter in letters:
        click.echo(
            f"{letter.message_id}  {letter.actor}  retries={letter.retries}  "
            f"failed_at={letter.failed_at}  reason={letter.reason}\n"
            f"    args={letter.args!r} kwargs={letter.kwargs!r}\n    error={letter.error}"
        )
    click.echo(f"{len(letters)} dead letter(s) shown")


@dlq.command("replay")
@click.argument("queue")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Replay at most this many (default: all).",
)
@click.option("--actor", default=None, help="Replay only the messages of this actor.")
@broker_option
@_clear_errors
def dlq_replay(queue: str, limit: int | None, actor: str | None, broker_url: str | None) -> None:
    """Put dead letters of QUEUE back on QUEUE (retry count reset), at-least-once."""
    from actors.names import original_queue

    with _broker(broker_url) as broker:
        moved = broker.replay_dead_letters(original_queue(queue), limit=limit, actor=actor)
    click.echo(f"replayed {moved} message(s) onto {original_queue(queue)}")


@dlq.command("purge")
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@broker_option
@_clear_errors
def dlq_purge(queue: str, yes: bool, broker_url: str | None) -> None:
    """Delete every dead letter of QUEUE."""
    from actors.names import dead_letter_queue, original_queue

    target = dead_letter_queue(original_queue(queue))
    if not yes:
        click.confirm(f"Delete every message in {target}?", abort=True)
    with _broker(broker_url) as broker:
        click.echo(f"purged {broker.purge(target)} message(s) from {target}")


backend_option = click.option(
    "--backend",
    "backend_url",
    envvar=ENV_BACKEND_URL,
    help=f"Backend URL: redis:// or memory:// (default: ${ENV_BACKEND_URL}, else the broker's).",
)


def _use(broker_url: str | None, backend_url: str | None) -> None:
    """Make the URLs given on the command line the process broker and backend."""
    if broker_url:
        registry.set_broker(broker_from_url(broker_url))
    if backend_url:
        registry.set_backend(backend_from_url(backend_url))


@main.command("status")
@click.argument("message_id")
@backend_option
@_clear_errors
def status_command(message_id: str, backend_url: str | None) -> None:
    """Show the state, progress, attempts and error of message MESSAGE_ID."""
    _use(None, backend_url)
    found = actors.status(message_id)
    for name in ("state", "progress", "progress_text", "attempts", "actor", "queue", "error",
                 "reason", "enqueued_at", "started_at", "finished_at"):  # fmt: skip
        value = getattr(found, name)
        if isinstance(value, float) and name.endswith("_at"):
            value = datetime.fromtimestamp(value).astimezone().isoformat(timespec="seconds")
        if value not in (None, ""):
            click.echo(f"{name}: {value}")


@main.command("cancel")
@click.argument("message_id")
@backend_option
@_clear_errors
def cancel_command(message_id: str, backend_url: str | None) -> None:
    """Cancel message MESSAGE_ID: skipped if queued, stopped if running."""
    _use(None, backend_url)
    actors.cancel(message_id)
    click.echo(f"cancel requested for {message_id}")


class _SchedulerCommands(click.Group):
    """``actors scheduler MODULE...`` runs a scheduler; named subcommands manage schedules."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


@main.group(cls=_SchedulerCommands)
def scheduler() -> None:
    """Run schedules (`actors scheduler app.tasks`) or manage them (list, run, enable, disable)."""


@scheduler.command("start", hidden=True)
@click.argument("modules", nargs=-1, required=True)
@broker_option
@backend_option
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="Log level.")  # fmt: skip
@_clear_errors
def scheduler_start(
    modules: tuple[str, ...], broker_url: str | None, backend_url: str | None, log_level: str
) -> None:
    """Enqueue the ticks of the schedules declared in MODULES until SIGTERM or SIGINT."""
    from actors.scheduler import Scheduler

    configure_logging(log_level, None)
    import_modules(modules, debug=log_level == "debug")
    _use(broker_url, backend_url)
    try:
        Scheduler().run_until_signalled()
    finally:
        registry.get_broker().close()


@scheduler.command("list")
@click.argument("modules", nargs=-1)
@backend_option
@_clear_errors
def scheduler_list(modules: tuple[str, ...], backend_url: str | None) -> None:
    """List the schedules declared in MODULES with their next run times."""
    from actors.scheduler import entries

    import_modules(modules, debug=False)
    _use(None, backend_url)
    for entry in entries():
        rule = entry.schedule.cron or f"every {entry.schedule.every:g}s"
        state = "enabled" if entry.enabled else "disabled"
        last = entry.last_run.isoformat(timespec="seconds") if entry.last_run else "-"
        click.echo(f"{entry.schedule.name}\t{rule}\t{state}\t"
                   f"next={entry.next_run.isoformat(timespec='seconds')}\tlast={last}")  # fmt: skip


@scheduler.command("run")
@click.argument("name")
@click.argument("modules", nargs=-1)
@broker_option
@backend_option
@_clear_errors
def scheduler_run(
    name: str, modules: tuple[str, ...], broker_url: str | None, backend_url: str | None
) -> None:
    """Enqueue a message of schedule NAME (declared in MODULES) now."""
    from actors.scheduler import run_now

    import_modules(modules, debug=False)
    _use(broker_url, backend_url)
    try:
        click.echo(f"enqueued {run_now(name)}")
    finally:
        registry.get_broker().close()


@scheduler.command("enable")
@click.argument("name")
@backend_option
@_clear_errors
def scheduler_enable(name: str, backend_url: str | None) -> None:
    """Enable schedule NAME for every scheduler."""
    from actors.scheduler import set_enabled

    _use(None, backend_url)
    set_enabled(name, True)
    click.echo(f"{name} enabled")


@scheduler.command("disable")
@click.argument("name")
@backend_option
@_clear_errors
def scheduler_disable(name: str, backend_url: str | None) -> None:
    """Disable schedule NAME for every scheduler (until enabled again)."""
    from actors.scheduler import set_enabled

    _use(None, backend_url)
    set_enabled(name, False)
    click.echo(f"{name} disabled")
