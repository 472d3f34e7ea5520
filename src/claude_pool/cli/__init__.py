"""The ``claude-pool`` command line: a thin face over :class:`claude_pool.Pool`.

Every command works against one store (a SQLite file in the working directory by default), so a
``claude-pool worker`` in one shell runs what ``claude-pool submit`` queues from another.

Exit codes: 0 success; 1 the task failed or was cancelled; 2 bad usage or configuration;
3 not found (no such task, or no store at all where one was only to be read); 4 refused (budget
exhausted, no slot available, pool shut down, the task is not in a state that allows it);
5 still not finished when the wait timed out; 130 Ctrl-C stopped the command's work.

One module per command group, each importing only :mod:`claude_pool.cli.common` (and
:mod:`claude_pool.cli.logs` for the long-running ones); this module puts them together into one
app.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Annotated

import typer
from rich.markup import escape

from claude_pool import __version__
from claude_pool.cli import (
    auto,
    diagnostics,
    fanout,
    serve,
    skills,
    status,
    tasks,
    watch,
    worker,
    workflows,
)
from claude_pool.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TASK_FAILED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
)
from claude_pool.cli.install import install_cli

PROG_NAME = "claude-pool"

app = typer.Typer(
    name=PROG_NAME,
    help="Run many Claude Code sessions as one managed pool.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _show_version(value: bool) -> None:
    if value:
        print(f"{PROG_NAME} {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Run many Claude Code sessions as one managed pool."""


# `claude-pool --help` lists the commands in this order, then the groups.
app.command()(tasks.submit)
app.command()(tasks.run)
app.command("fan-out")(fanout.fan_out)
app.command()(tasks.result)
app.command()(tasks.tasks)
app.command()(tasks.cancel)
app.command()(tasks.requeue)
app.command()(tasks.approve)
app.command()(tasks.reject)
app.command()(tasks.merge)
app.command()(status.status)
app.command()(status.metrics)
app.command()(watch.watch)
app.command()(worker.worker)
app.command()(serve.serve)
app.command()(diagnostics.doctor)
app.command()(diagnostics.demo)
app.command("install-cli")(install_cli)
app.command("auto")(auto.auto_command)
app.command("route")(auto.route_command)
app.add_typer(skills.skills_app)
app.add_typer(workflows.workflow_app)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`$-])")


def _reflowed(doc: str) -> str:
    """A docstring's paragraphs, each on one line: the console wraps them to its width
    (Rich help keeps a docstring's line breaks as they are)."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring: what ``claude-pool --help`` says of a command."""
    first = _reflowed(doc).split("\n\n", 1)[0]
    return _SENTENCE_END.split(first, 1)[0]


def _tidy_help(group: typer.Typer) -> None:
    """Give every command one short line in its group's list (the first sentence of its
    docstring) and its whole docstring, reflowed and taken literally (never as Rich markup),
    as its own help."""
    for command in group.registered_commands:
        doc = command.help or (command.callback.__doc__ if command.callback else None)
        if doc:
            command.help = escape(_reflowed(doc))
            command.short_help = escape(first_sentence(doc))
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _tidy_help(sub.typer_instance)


_tidy_help(app)


def main() -> None:
    try:
        app(prog_name=PROG_NAME)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_TASK_FAILED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "app",
    "first_sentence",
    "main",
]
