"""``claude-pool status``: the slots, the queue and the spend."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from claude_pool.cli.common import (
    ConfigOpt,
    JsonOpt,
    StoreOpt,
    _client,
    _print_json,
    _run,
    _settings,
    out,
)
from claude_pool.types import microdollars_to_usd


def status(
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show slots, queue and spend."""
    settings = _settings(config, store=store)

    async def go() -> dict[str, Any]:
        async with _client(settings) as pool:
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
        table.add_row(
            s["id"],
            s["state"],
            cfg.get("name") or cfg.get("role") or "-",
            s["current_task"] or "-",
            str(s["tasks_completed"]),
            f"{microdollars_to_usd(s['cost_microdollars']):.4f}",
        )
    out.print(table)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(data["tasks"].items())) or "no tasks"
    out.print(f"tasks: {counts}")
    budget = data["budget_microdollars"]
    spent = microdollars_to_usd(data["spend_microdollars"])
    limit = f" of ${microdollars_to_usd(budget):.4f}" if budget is not None else ""
    out.print(f"spend: ${spent:.6f}{limit}")
    if data["rate_limit"]:
        out.print(data["rate_limit"]["message"])
