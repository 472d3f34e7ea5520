"""``claude-pool doctor`` and ``claude-pool demo``: can this machine run a pool, and watch one
work."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from claude_pool.cli.common import (
    EXIT_OK,
    EXIT_TASK_FAILED,
    ConfigOpt,
    JsonOpt,
    StoreOpt,
    _print_json,
    _run,
    out,
)
from claude_pool.config import Settings, load_settings
from claude_pool.errors import ConfigError


def doctor(
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check that this machine can run a pool. It looks at the claude CLI and its version,
    credentials, git, the store and node/npm, and says what to fix (exit 1 when something
    must be)."""
    from claude_pool.doctor import Status, print_report, run_checks

    settings: Settings | None = None
    problem: str | None = None
    try:
        settings = load_settings(config, store=store)
    except ConfigError as exc:
        problem = str(exc)
    checks = asyncio.run(run_checks(settings, config_error=problem))
    if as_json:
        ok = all(c.status is not Status.FAIL for c in checks)
        _print_json({"ok": ok, "checks": [c.to_json() for c in checks]})
    else:
        print_report(checks, out)
    raise typer.Exit(EXIT_TASK_FAILED if any(c.status is Status.FAIL for c in checks) else EXIT_OK)


def demo(
    mock: Annotated[
        bool | None,
        typer.Option(
            "--mock/--real",
            help="Use the built-in mock Anthropic API, or the real one (default: the real API "
            "when ANTHROPIC_API_KEY is set).",
        ),
    ] = None,
    slots: Annotated[int, typer.Option(min=1, max=8, help="Number of slots.")] = 3,
    budget_usd: Annotated[float, typer.Option(min=0.01, help="Spend cap in USD.")] = 1.0,
    model: Annotated[str | None, typer.Option(help="Model (real API only).")] = None,
    keep: Annotated[bool, typer.Option(help="Keep the demo's project directory.")] = False,
) -> None:
    """Watch a pool of real Claude Code slots at work. It runs a fan-out of reviews, a two-step
    chain and a task through the review gate, then shows spend and metrics; it needs no API
    key (it uses the built-in mock API without one)."""
    from claude_pool.demo import DemoOptions, run_demo

    options = DemoOptions(
        mock=mock, slots=slots, budget_usd=budget_usd, model=model, keep_project=keep
    )
    raise typer.Exit(_run(run_demo(options, out)))
