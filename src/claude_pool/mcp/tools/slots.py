"""Scaling and slot identity: pool_scale_up, pool_scale_down, pool_set_target_slots,
pool_find_slots, pool_configure_slot."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from claude_pool.mcp.arguments import NOT_BOOL, Name, Note, SlotIdArg, ToolNames
from claude_pool.mcp.models import ScaleResult, SlotList
from claude_pool.mcp.tooling import CHANGES, READ_ONLY, REMOVES, SETS, pool_tool
from claude_pool.pool import Pool
from claude_pool.types import Effort, PermissionMode, SlotRecord, SlotState

SlotCount = Annotated[int, Field(ge=1, le=1_000, description="How many slots."), NOT_BOOL]


def _scaled(pool: Pool, changed: list[SlotRecord], note: str | None = None) -> ScaleResult:
    slots = pool.slots
    return ScaleResult(
        changed=[s.id for s in changed], slot_count=len(slots), slots=slots, note=note
    )


def register_slot_tools(server: MCPServer[Any], pool: Pool) -> None:
    """Scaling and slot identity."""

    @pool_tool(server, "pool_scale_up", CHANGES, "Add slots")
    async def pool_scale_up(n: SlotCount = 1) -> ScaleResult:
        """Add n slots (more tasks can run at once), within the pool's max_slots. Slots cost
        nothing while idle."""
        return _scaled(pool, await pool.scale_up(n))

    @pool_tool(server, "pool_scale_down", REMOVES, "Remove slots")
    async def pool_scale_down(n: SlotCount = 1) -> ScaleResult:
        """Remove n slots, idle and least-used first, within the pool's min_slots. A slot
        running a task is never interrupted, so fewer may be removed than asked. A removed
        slot's conversation ends."""
        removed = await pool.scale_down(n)
        note = None
        if len(removed) < n:
            note = f"removed {len(removed)} of {n}: the other slots are busy; try again later"
        return _scaled(pool, removed, note)

    @pool_tool(server, "pool_set_target_slots", REMOVES, "Scale to a number of slots")
    async def pool_set_target_slots(
        n: Annotated[int, Field(ge=0, le=1_000, description="Slots wanted."), NOT_BOOL],
    ) -> ScaleResult:
        """Add or remove slots to reach n (within min_slots..max_slots). Busy slots are never
        interrupted, so the pool may stay above n until they finish."""
        before = {s.id for s in pool.slots}
        after = await pool.set_target_slots(n)
        now = {s.id for s in after}
        changed = [s for s in after if s.id not in before]
        note = None
        if len(after) > n:
            note = f"{len(after)} slots: the rest are busy; call again once they finish"
        result = _scaled(pool, changed, note)
        result.changed += sorted(before - now)
        return result

    @pool_tool(server, "pool_find_slots", READ_ONLY, "Find slots")
    async def pool_find_slots(
        name: Annotated[Name | None, Field(description="Slot name.")] = None,
        role: Annotated[Name | None, Field(description="Slot role.")] = None,
        state: Annotated[SlotState | None, Field(description="Slot state.")] = None,
    ) -> SlotList:
        """Slots matching every given criterion (all slots when none is given), with their
        id, state, current task, configuration and spend."""
        return SlotList(slots=pool.find_slots(name, role, state))

    @pool_tool(server, "pool_configure_slot", SETS, "Configure a slot")
    async def pool_configure_slot(
        slot_id: SlotIdArg,
        name: Annotated[Name | None, Field(description="A name to target the slot by.")] = None,
        role: Annotated[
            Name | None, Field(description='A role to target by, e.g. "reviewer".')
        ] = None,
        description: Annotated[Note | None, Field(description="What the slot is for.")] = None,
        model: Annotated[Name | None, Field(description="Default model for the slot.")] = None,
        permission_mode: PermissionMode | None = None,
        max_turns: Annotated[int | None, Field(ge=1, le=10_000), NOT_BOOL] = None,
        system_prompt: Annotated[
            Note | None, Field(description="Appended to Claude Code's system prompt.")
        ] = None,
        allowed_tools: ToolNames | None = None,
        mcp_servers: Annotated[
            dict[Name, dict[str, Any]] | None,
            Field(description="Extra MCP servers for this slot, by name, as in .mcp.json."),
        ] = None,
        effort: Effort | None = None,
        fallback_model: Name | None = None,
        slot_assignment_timeout_secs: Annotated[
            int | None,
            Field(ge=0, le=86_400, description="How long tasks wait for this slot."),
            NOT_BOOL,
        ] = None,
    ) -> SlotRecord:
        """Give a slot an identity (name, role, description) and/or its own settings; fields
        left out keep their values. Takes effect from the slot's next task. Use roles to
        target work (pool_submit role=...), e.g. a "reviewer" slot with its own prompt."""
        return await pool.configure_slot(
            slot_id,
            name=name,
            role=role,
            description=description,
            model=model,
            permission_mode=permission_mode,
            max_turns=max_turns,
            system_prompt=system_prompt,
            allowed_tools=allowed_tools,
            mcp_servers=mcp_servers,
            effort=effort,
            fallback_model=fallback_model,
            slot_assignment_timeout_secs=slot_assignment_timeout_secs,
        )


__all__ = [
    "register_slot_tools",
]
