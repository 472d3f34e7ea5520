"""``claude-pool fan-out``: many prompts side by side, one result per line as each ends.

Like ``claude-pool run`` it goes through a live ``claude-pool worker`` on the same store if
there is one, else runs in this process (with one slot, so one prompt at a time).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from claude_pool.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TASK_FAILED,
    EXIT_USAGE,
    AfterOpt,
    BudgetOpt,
    ConfigOpt,
    ContinueOpt,
    JsonOpt,
    MaxTurnsOpt,
    ModelOpt,
    PermissionOpt,
    RunAnywayOpt,
    StoreOpt,
    TagOpt,
    TimeoutOpt,
    _executing_pool,
    _fail,
    _interruptible,
    _overrides,
    _run,
    _settings,
    _usage,
    err,
    out,
)
from claude_pool.errors import TaskNotFound
from claude_pool.pool import FanOutItem
from claude_pool.types import microdollars_to_usd


def _read_prompts(source: str) -> list[str]:
    """One prompt per non-blank line of a file, or of standard input for ``-``."""
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _usage(f"cannot read prompts from {source}: {exc}")
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        _usage(f"no prompts in {'standard input' if source == '-' else source}: give one a line")
    return prompts


def _line(item: FanOutItem) -> str:
    """One item on one line: its number, how it ended, its task, and its output (or why it
    failed) with line breaks turned into spaces."""
    status = "ok" if item.success else (str(item.state) if item.state else "refused")
    text = item.result.output if item.result is not None and item.success else item.error or ""
    return f"{item.index + 1} {status} {item.task_id or '-'}: {' '.join(text.split())}"


def fan_out(
    prompts_from: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="A file of prompts, one per line, or - for standard input."
        ),
    ],
    model: ModelOpt = None,
    max_turns: MaxTurnsOpt = None,
    permission_mode: PermissionOpt = None,
    max_budget_usd: BudgetOpt = None,
    timeout: TimeoutOpt = None,
    tag: TagOpt = None,
    keep_conversation: ContinueOpt = False,
    after: AfterOpt = None,
    run_anyway: RunAnywayOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run many prompts side by side and print one result per line as each ends. Prompts come
    one per line from a file or standard input; `--after ID` holds every one until that task
    has completed; `--json` prints one JSON object per line; exit 1 if any failed, 130 on
    Ctrl-C (which cancels the rest)."""
    settings = _settings(config, store=store)
    overrides = _overrides(model, max_turns, permission_mode, max_budget_usd)
    prompts = _read_prompts(prompts_from)

    def show(item: FanOutItem) -> None:
        if as_json:
            data = item.model_dump(mode="json")
            data["prompt"] = prompts[item.index]
            print(json.dumps(data), flush=True)
        else:
            out.print(_line(item), markup=False, highlight=False)

    async def go() -> list[FanOutItem] | None:
        async with _executing_pool(settings) as pool:
            for task_id in after or ():
                try:  # an unknown task is refused before any prompt is queued
                    await pool.get_task(task_id)
                except TaskNotFound as exc:
                    _fail(f"--after {task_id}: {exc}", EXIT_USAGE)
            # Cancelling the call cancels its tasks (each keeps what it spent).
            items, _ = await _interruptible(
                pool.fan_out_items(
                    prompts,
                    overrides,
                    tag or (),
                    on_item=show,
                    timeout=timeout,
                    fresh_session=not keep_conversation,
                    depends_on=after or (),
                    on_dependency_failure="run" if run_anyway else "cancel",
                )
            )
            return items

    items = _run(go())
    if items is None:
        err.print("cancelled: the prompts still running or queued were stopped")
        raise typer.Exit(EXIT_INTERRUPTED)
    failed = sum(1 for item in items if not item.success)
    cost = sum(item.result.cost_microdollars for item in items if item.result is not None)
    err.print(
        escape(
            f"{len(items) - failed} ok, {failed} failed · cost ${microdollars_to_usd(cost):.6f}"
        ),
        highlight=False,
    )
    raise typer.Exit(EXIT_TASK_FAILED if failed else EXIT_OK)
