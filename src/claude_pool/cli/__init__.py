"""The ``claude-pool`` command line: a thin face over :class:`claude_pool.Pool`.

Every command works against one store (a SQLite file in the working directory by default), so a
``claude-pool worker`` in one shell runs what ``claude-pool submit`` queues from another.

Exit codes: 0 success; 1 the task failed or was cancelled; 2 bad usage or configuration;
3 no such task; 4 refused (budget exhausted, no slot available, pool shut down); 5 still not
finished when the wait timed out.

One module per command group, each importing only :mod:`claude_pool.cli.common`; this module
puts them together into one app.
"""

from __future__ import annotations

import sys

import typer

from claude_pool.cli import auto, diagnostics, serve, skills, status, tasks, worker, workflows
from claude_pool.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TASK_FAILED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
)
from claude_pool.cli.install import install_cli

app = typer.Typer(
    name="claude-pool",
    help="Run many Claude Code sessions as one managed pool.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# `claude-pool --help` lists the commands in this order, then the groups.
app.command()(tasks.submit)
app.command()(tasks.result)
app.command()(tasks.cancel)
app.command()(tasks.tasks)
app.command()(status.status)
app.command()(tasks.run)
app.command()(worker.worker)
app.command()(serve.serve)
app.command()(diagnostics.doctor)
app.command()(diagnostics.demo)
app.command("install-cli")(install_cli)
app.command("auto")(auto.auto_command)
app.command("route")(auto.route_command)
app.add_typer(skills.skills_app)
app.add_typer(workflows.workflow_app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = [
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_TASK_FAILED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "app",
    "main",
]
