"""One slot's runtime side: its record, working directory, and the task it is running."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from claude_pool.store.base import TaskTarget
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
    taken_away: bool = False
    """The store gave the task to another run (re-queued by a process that took this one for
    dead, perhaps claimed elsewhere since): this run's settlement must leave it alone."""

    def stop(self, reason: str) -> None:
        """Ask the run to stop (its process is interrupted, then killed)."""
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()


@dataclass
class Slot:
    """The live counterpart of a ``SlotRecord`` owned by this pool process.

    ``record`` mirrors what this process last wrote to the store; the store stays the truth for
    other processes.
    """

    record: SlotRecord
    cwd: Path
    mode: SlotMode
    running: RunningTask | None = None
    stopping: bool = False
    claiming: bool = False
    """The scheduler is asking the store for a task for this slot right now."""
    starting: bool = False
    """Its CLI process is being started ahead of its first task: it takes no task yet."""
    looking: bool = True
    """The slot should ask the store for work (it was just added, finished a task with more
    work perhaps waiting, or work that fits it arrived); False while it is parked with
    nothing to do."""
    backlog: bool = True
    """The queue may hold work for this slot that this process was never told of (work
    stored before it opened, or when a wake-up may have been lost): the slot asks again
    whenever its task ends, until a claim finds nothing. Without it, a slot whose task ends
    asks only for work announced here that no other slot is asking for
    (:meth:`claude_pool.scheduler.Scheduler.wants_work`), and otherwise parks until work
    arrives for it. (Asking after every task, a pool with more slots than work asked the
    store once per task for nothing.)"""
    last_active_ms: int = field(default_factory=now_ms)
    crash_streak: int = 0
    """Tasks in a row whose CLI process died; past ``max_restarts`` the slot is errored."""
    unread_messages: bool = True
    """Messages may be waiting for this slot (checked with its next task)."""

    @property
    def id(self) -> SlotId:
        return self.record.id

    @property
    def role(self) -> str | None:
        return self.record.config.role

    @property
    def name(self) -> str | None:
        return self.record.config.name

    @property
    def is_idle(self) -> bool:
        """Runs no task and is not about to (its process may still be starting), is not
        stopping, not errored."""
        return (
            self.running is None
            and not self.claiming
            and not self.stopping
            and self.record.state is not SlotState.ERRORED
        )

    @property
    def is_free(self) -> bool:
        """Can take a task now: idle, and its process is not being started."""
        return self.is_idle and not self.starting

    def may_run(self, target: TaskTarget) -> bool:
        return target.matches(self.id, self.role, self.name)
