"""An executor that records what another executor reports, through the executor seam."""

from __future__ import annotations

from claude_pool.executor.base import (
    EventCallback,
    EventKind,
    ExecutionRequest,
    Executor,
    ExecutorEvent,
    SlotStart,
)
from claude_pool.types import SlotId, TaskResult


class RecordingExecutor:
    """An executor that forwards to another and keeps every executor event it reports (the
    CLI's process starts with their pids, for instance), through the same seam the pool uses."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.events: list[ExecutorEvent] = []

    async def execute(
        self, request: ExecutionRequest, on_event: EventCallback | None = None
    ) -> TaskResult:
        def record(event: ExecutorEvent) -> None:
            self.events.append(event)
            if on_event is not None:
                on_event(event)

        return await self.inner.execute(request, record)

    async def start_slot(self, start: SlotStart) -> bool:
        start_slot = getattr(self.inner, "start_slot", None)
        return bool(await start_slot(start)) if start_slot is not None else False

    def budget_left(self, slot_id: SlotId, *, fresh: bool) -> int | None:
        budget_left = getattr(self.inner, "budget_left", None)
        left = budget_left(slot_id, fresh=fresh) if budget_left is not None else None
        return left if isinstance(left, int) else None

    async def release_slot(self, slot_id: SlotId) -> None:
        await self.inner.release_slot(slot_id)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def check(self) -> None:
        check = getattr(self.inner, "check", None)
        if check is not None:
            await check()

    def of_kind(self, kind: EventKind) -> list[ExecutorEvent]:
        return [e for e in self.events if e.kind is kind]


__all__ = ["RecordingExecutor"]
