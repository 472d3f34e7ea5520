"""One slot's runtime side: its record, working directory, loop and the task it is running."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from claude_pool.types import SlotId, SlotMode, SlotRecord, SlotState, TaskId, now_ms


@dataclass
class RunningTask:
    """A task a slot of this pool is executing right now."""

    task_id: TaskId
    slot_id: SlotId
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str | None = None
    started_ms: int = field(default_factory=now_ms)
    timeout_secs: float | None = None
    crashed: bool = False
    """The CLI process died under this task."""
    one_shot: bool = False
    """Ran in its own directory, outside the slot's conversation (see ``Pool.submit(cwd=)``)."""
    delivered_up_to: int | None = None
    """Id of the last unread message handed to this task with its prompt; those up to it
    are marked read once the task succeeds."""


@dataclass
class Slot:
    """The live counterpart of a ``SlotRecord`` owned by this pool process.

    ``record`` mirrors what this process last wrote to the store; the store stays the truth for
    other processes.
    """

    record: SlotRecord
    cwd: Path
    mode: SlotMode
    loop_task: asyncio.Task[None] | None = None
    running: RunningTask | None = None
    stopping: bool = False
    last_active_ms: int = field(default_factory=now_ms)
    crash_streak: int = 0
    """Tasks in a row whose CLI process died; past ``max_restarts`` the slot is errored."""

    @property
    def id(self) -> SlotId:
        return self.record.id

    @property
    def is_idle(self) -> bool:
        return self.running is None and self.record.state is SlotState.IDLE
