"""``claude-pool status`` and ``metrics``: the slots, the queue, the spend, and figures about
the tasks."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from claude_pool.cli.common import (
    ConfigOpt,
    JsonOpt,
    StoreOpt,
    _client,
    _print_json,
    _print_table,
    _run,
    _settings,
    _usage,
    out,
)
from claude_pool.types import MetricsFilter, SessionMetrics, microdollars_to_usd, now_ms


def status(
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show slots, queue and spend."""
    settings = _settings(config, store=store)

    async def go() -> dict[str, Any]:
        async with _client(settings, existing=True) as pool:
            st = await pool.status()
            slots = await pool.store.list_slots()
            data = st.model_dump(mode="json")
            data["slots"] = [s.model_dump(mode="json") for s in slots]
            return data

    data = _run(go())
    if as_json:
        _print_json(data)
        return
    table = Table(title="slots")
    for name in ("slot", "state", "name/role", "task", "done", "cost $"):
        table.add_column(name, no_wrap=True)
    for s in data["slots"]:
        cfg = s["config"]
        cells = [
            s["id"],
            s["state"],
            cfg.get("name") or cfg.get("role") or "-",
            s["current_task"] or "-",
            str(s["tasks_completed"]),
            f"{microdollars_to_usd(s['cost_microdollars']):.4f}",
        ]
        table.add_row(*(Text(cell) for cell in cells))
    _print_table(table)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(data["tasks"].items())) or "no tasks"
    out.print(f"tasks: {counts}")
    for task_id, dependencies in data.get("waiting", {}).items():
        out.print(f"{task_id} waits for {', '.join(dependencies)}", markup=False)
    budget = data["budget_microdollars"]
    spent = microdollars_to_usd(data["spend_microdollars"])
    limit = f" of ${microdollars_to_usd(budget):.4f}" if budget is not None else ""
    out.print(f"spend: ${spent:.6f}{limit}")
    if data["rate_limit"]:
        out.print(data["rate_limit"]["message"])


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def _moment(value: str, option: str) -> int:
    """Epoch milliseconds for ``30m``, ``2h``, ``1d``... (that long ago) or an ISO 8601 date or
    time (local time unless it names its zone)."""
    text = value.strip()
    if match := _AGO.fullmatch(text):
        return now_ms() - int(float(match[1]) * _UNITS[match[2]] * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _usage(
            f"{option} {value!r}: give a time ago (30m, 2h, 1d, 1w) or an ISO date or time "
            "(2025-06-01, 2025-06-01T14:00)"
        )
    return int(moment.timestamp() * 1000)


def metrics(
    since: Annotated[
        str | None,
        typer.Option(help="Only tasks created since: 30m, 2h, 1d ago, or an ISO date/time."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only tasks created before: as for --since.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Any of these tags.")] = None,
    model: Annotated[str | None, typer.Option(help="Only tasks run on this model.")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show counts, spend, time and turn figures and a per-model breakdown of the tasks."""
    settings = _settings(config, store=store)
    window = MetricsFilter(
        since_ms=_moment(since, "--since") if since is not None else None,
        until_ms=_moment(until, "--until") if until is not None else None,
        tags=tag or None,
        model=model,
        # This command's own pool has just opened: what the user means is every task.
        all_time=since is None and until is None,
    )

    async def go() -> SessionMetrics:
        async with _client(settings, existing=True) as pool:
            return await pool.session_metrics(window)

    figures = _run(go())
    if as_json:
        # The session fields describe this short-lived process's pool: nothing to report.
        _print_json(
            figures.model_dump(mode="json", exclude={"session_start_ms", "session_duration_ms"})
        )
        return
    _print_metrics(figures)


def _usd(microdollars: int) -> str:
    return f"${microdollars_to_usd(microdollars):.4f}"


def _secs(ms: int) -> str:
    return f"{ms / 1000:.1f}s"


def _print_metrics(m: SessionMetrics) -> None:
    counts = (
        f"{m.total_tasks} tasks: {m.completed_tasks} completed, {m.failed_tasks} failed, "
        f"{m.cancelled_tasks} cancelled, {m.running_tasks} running, {m.pending_tasks} pending"
    )
    out.print(counts, markup=False, highlight=False)
    out.print(
        f"spend {_usd(m.total_spend_microdollars)} · per task {_usd(m.avg_cost_microdollars)} "
        f"on average, {_usd(m.max_cost_microdollars)} at most",
        markup=False,
        highlight=False,
    )
    out.print(
        f"time per task: {_secs(m.avg_elapsed_ms)} on average, {_secs(m.median_elapsed_ms)} "
        f"median, {_secs(m.min_elapsed_ms)} to {_secs(m.max_elapsed_ms)} · "
        f"{m.avg_turns:.1f} turns on average",
        markup=False,
        highlight=False,
    )
    if not m.model_breakdown:
        return
    table = Table(title="by model")
    for name in ("model", "tasks", "cost $", "avg cost $", "avg time", "turns"):
        table.add_column(name, no_wrap=True)
    for row in m.model_breakdown:
        table.add_row(
            Text(row.model or "-"),
            str(row.task_count),
            f"{microdollars_to_usd(row.total_cost_microdollars):.4f}",
            f"{microdollars_to_usd(row.avg_cost_microdollars):.4f}",
            _secs(row.avg_elapsed_ms),
            str(row.total_turns),
        )
    _print_table(table)
