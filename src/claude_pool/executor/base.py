"""The execution seam: turn (effective config, prompt, slot) into a ``TaskResult``.

The engine never touches processes; it hands an :class:`ExecutionRequest` to an :class:`Executor`
and gets a ``TaskResult`` back, with :class:`ExecutorEvent` s streamed to a callback meanwhile.
Task-level failures (CLI error, timeout, crash, bad credentials, cancellation) come back as a
failed ``TaskResult``, never as an exception; only programming errors raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from claude_pool.config import EffectiveConfig
from claude_pool.types import SlotId, SlotMode, TaskId, TaskResult, now_ms


class EventKind(StrEnum):
    PROCESS_STARTED = "process_started"
    """A CLI process started (data: pid, resumed session id, restart flag)."""
    PROCESS_EXITED = "process_exited"
    """A CLI process died unexpectedly mid-task (data: pid, exit_code, reason)."""
    CONVERSATION_RESET = "conversation_reset"
    """The slot's live process started a new conversation in place, with ``/clear`` instead
    of a new process (data: pid, previous_session, session_id)."""
    SESSION = "session"
    """The CLI reported its session id and model (data: session_id, model, tools)."""
    ASSISTANT_TEXT = "assistant_text"
    """Assistant text (data: text)."""
    TOOL_USE = "tool_use"
    """The model called a tool (data: name, input, id)."""
    TOOL_RESULT = "tool_result"
    """A tool returned (data: tool_use_id, is_error, content preview)."""
    TURN = "turn"
    """An assistant turn finished (data: turn number)."""
    API_RETRY = "api_retry"
    """The CLI is retrying an API call (data: status, attempt, max_retries, delay_ms, error)."""
    RATE_LIMIT = "rate_limit"
    """Rate-limit information from the CLI (data: as reported)."""
    PERMISSION_DENIED = "permission_denied"
    """The CLI refused a tool call for lack of permission (data: tool, reason, tool_use_id)."""
    RESULT = "result"
    """The CLI's final result event for the task (data: the raw event)."""
    STDERR = "stderr"
    """A line the CLI wrote to stderr (data: line)."""


@dataclass(frozen=True)
class ExecutorEvent:
    kind: EventKind
    task_id: TaskId
    slot_id: SlotId
    data: dict[str, Any] = field(default_factory=dict)
    at_ms: int = field(default_factory=now_ms)


EventCallback = Callable[[ExecutorEvent], None]


@dataclass
class ExecutionRequest:
    task_id: TaskId
    slot_id: SlotId
    prompt: str
    config: EffectiveConfig
    cwd: Path
    mode: SlotMode = SlotMode.PERSISTENT
    """Persistent: continue ``session_id`` in the slot's warm process. Ephemeral: a new
    conversation for this task only. Either way a new conversation (``session_id`` None) may
    be started in the slot's live process, when its flags and directory fit the task (the CLI
    executor sends ``/clear``), which then stays warm for the slot's next task."""
    session_id: str | None = None
    """Conversation to resume (recorded in ``cwd``); None starts a new one."""
    one_off: bool = False
    """Run in a process of its own that ends with the task, leaving the slot's warm process
    and conversation alone (a task in another directory than the slot's)."""
    timeout_secs: float | None = None
    """Wall-clock limit for the task; on expiry the process group is killed."""
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    """Set to stop the task: the CLI is interrupted (then killed if it does not stop) and a
    failed result carrying the spend so far is returned."""


@dataclass(frozen=True)
class SlotStart:
    """What a slot's process is started with ahead of its first task: the configuration its
    tasks get when they override nothing."""

    slot_id: SlotId
    config: EffectiveConfig
    cwd: Path
    session_id: str | None = None
    """The slot's conversation to resume; None starts a new one."""


@runtime_checkable
class Executor(Protocol):
    async def execute(
        self, request: ExecutionRequest, on_event: EventCallback | None = None
    ) -> TaskResult:
        """Run one task. Returns a failed TaskResult for task-level failures. If the calling
        asyncio task is cancelled, the process is torn down (shielded) and CancelledError
        propagates."""

    async def release_slot(self, slot_id: SlotId) -> None:
        """Stop the slot's warm process (if any) and delete its temp files."""

    async def aclose(self) -> None:
        """Stop every process this executor started; none outlives this call."""

    # An executor may also offer ``async start_slot(start: SlotStart) -> bool``: start the
    # slot's warm process ahead of its first task and return once it is ready to take one
    # (False if it could not be started: the first task then starts one as usual; it never
    # raises for a task-level reason). The pool calls it when a slot is added, a bounded
    # number at once, and gives the slot no task until it returns.
    #
    # An executor may also offer ``budget_left(slot_id, *, fresh: bool) -> int | None``:
    # what the slot's live process lets its next task spend under the budget cap it was
    # started with, in microdollars (``fresh``: a task in a new conversation), or None. A
    # request whose ``config.max_budget_usd`` is exactly that runs in that process; the
    # pool's budget reserves it when it fits, so budgeted tasks need no new process.
    #
    # An executor may also offer ``call_cost_prior(model) -> int``: what one API call of
    # ``model`` is expected to cost in microdollars before the pool has seen one (the budget
    # never starts a task with a cap below that). Without it the pool assumes a typical
    # Claude Code call.
