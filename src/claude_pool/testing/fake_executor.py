"""A complete in-process executor for fast engine tests and benchmarks.

It implements the same :class:`~claude_pool.executor.base.Executor` seam as the real CLI
executor: results come from a handler (by default: echo the prompt), tasks can be held until a
test releases them, cancellation and timeouts behave like the real thing (a failed result with
the spend so far), and every request is recorded. Slots can be started ahead of their tasks
(``start_slot``), held until a test releases them, to watch how a pool starts its slots.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from claude_pool.executor.base import (
    EventCallback,
    EventKind,
    ExecutionRequest,
    ExecutorEvent,
    SlotStart,
)
from claude_pool.types import SlotId, TaskResult

Handler = Callable[[ExecutionRequest], TaskResult | Awaitable[TaskResult]]
EventScript = Callable[[ExecutionRequest], Iterable[tuple[EventKind, dict[str, Any]]]]


def echo_handler(request: ExecutionRequest) -> TaskResult:
    return TaskResult.success_result(
        f"done: {request.prompt}", cost_microdollars=1000, turns_used=1
    )


@dataclass
class FakeExecutor:
    """Scriptable executor. ``hold`` keeps every task running until :meth:`release` (or until
    its cancel event or timeout fires), which lets tests observe queues and running states
    without sleeping."""

    handler: Handler = echo_handler
    hold: bool = False
    model: str = "fake-model"
    events: EventScript | None = None
    """Events to emit (kind, data) when a task starts, e.g. API retries."""
    cancel_cost_microdollars: int = 0
    """Spend reported by a task that is cancelled while held (like a CLI interrupted mid-turn)."""
    call_cost_microdollars: int = 1000
    """What the executor expects one call to cost (:meth:`call_cost_prior`): the echo
    handler's cost."""
    hold_starts: bool = False
    """Keep every ``start_slot`` call waiting until :meth:`release_start`."""
    starts: list[SlotStart] = field(default_factory=list)
    """Every ``start_slot`` call, in the order they came."""
    started: list[SlotId] = field(default_factory=list)
    """The slots whose start returned, in that order."""
    starting: dict[SlotId, SlotStart] = field(default_factory=dict)
    most_starting: int = 0
    """The most ``start_slot`` calls that were in progress at once."""
    requests: list[ExecutionRequest] = field(default_factory=list)
    running: dict[str, ExecutionRequest] = field(default_factory=dict)
    released_slots: list[SlotId] = field(default_factory=list)
    closed: bool = False
    _gates: dict[str, asyncio.Event] = field(default_factory=dict)
    _start_gates: dict[SlotId, asyncio.Event] = field(default_factory=dict)
    _callbacks: dict[str, EventCallback] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_running(self, count: int, timeout: float = 5.0) -> list[ExecutionRequest]:
        """Wait until at least ``count`` tasks are running inside the executor."""
        async with asyncio.timeout(timeout):
            while len(self.running) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.running.values())

    async def wait_starting(self, count: int, timeout: float = 5.0) -> list[SlotStart]:
        """Wait until at least ``count`` slot starts are in progress (held)."""
        async with asyncio.timeout(timeout):
            while len(self.starting) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.starting.values())

    async def wait_started(self, count: int, timeout: float = 5.0) -> list[SlotId]:
        """Wait until at least ``count`` slot starts have returned."""
        async with asyncio.timeout(timeout):
            while len(self.started) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.started)

    def release_start(self, slot_id: SlotId | None = None) -> None:
        """Let one held slot start (or, with no id, every one from now on) finish."""
        if slot_id is None:
            self.hold_starts = False
            for gate in self._start_gates.values():
                gate.set()
        else:
            self._start_gates.setdefault(slot_id, asyncio.Event()).set()

    async def start_slot(self, start: SlotStart) -> bool:
        self.starts.append(start)
        self.starting[start.slot_id] = start
        self.most_starting = max(self.most_starting, len(self.starting))
        self._changed.set()
        try:
            if self.hold_starts:
                await self._start_gates.setdefault(start.slot_id, asyncio.Event()).wait()
        finally:
            self.starting.pop(start.slot_id, None)
        self.started.append(start.slot_id)
        self._changed.set()
        return True

    def release(self, task_id: str | None = None) -> None:
        """Let one held task (or, with no id, every task from now on) finish."""
        if task_id is None:
            self.hold = False
            for gate in self._gates.values():
                gate.set()
        else:
            self._gates.setdefault(task_id, asyncio.Event()).set()

    def emit(self, task_id: str, kind: EventKind, data: dict[str, Any] | None = None) -> None:
        """Report an event from a running (held) task, as the CLI would mid-task."""
        request = self.running.get(task_id)
        callback = self._callbacks.get(task_id)
        if request is None or callback is None:
            raise KeyError(f"task {task_id} is not running in the fake executor")
        callback(ExecutorEvent(kind, request.task_id, request.slot_id, data or {}))

    async def execute(
        self, request: ExecutionRequest, on_event: EventCallback | None = None
    ) -> TaskResult:
        self.requests.append(request)
        self.running[request.task_id] = request
        self._changed.set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        if on_event is not None:
            self._callbacks[request.task_id] = on_event
        try:
            if on_event is not None:
                on_event(
                    ExecutorEvent(
                        EventKind.PROCESS_STARTED,
                        request.task_id,
                        request.slot_id,
                        {"pid": 0, "restart": False},
                    )
                )
                for kind, data in self.events(request) if self.events else ():
                    on_event(ExecutorEvent(kind, request.task_id, request.slot_id, data))
            stopped = await self._wait_until_released(request) if self.hold else None
            elapsed = int((loop.time() - started) * 1000)
            if stopped is not None:
                return stopped.with_elapsed_ms(elapsed)
            result = self.handler(request)
            if inspect.isawaitable(result):
                result = await result
            result = result.with_elapsed_ms(elapsed)
            if result.model is None:
                result = result.with_model(request.config.model or self.model)
            if on_event is not None:
                on_event(
                    ExecutorEvent(
                        EventKind.RESULT,
                        request.task_id,
                        request.slot_id,
                        {"success": result.success},
                    )
                )
            return result
        finally:
            self.running.pop(request.task_id, None)
            self._gates.pop(request.task_id, None)
            self._callbacks.pop(request.task_id, None)
            self._changed.set()

    async def _wait_until_released(self, request: ExecutionRequest) -> TaskResult | None:
        """None once released; a failed result if cancelled or timed out first."""
        gate = self._gates.setdefault(request.task_id, asyncio.Event())
        waiters = [asyncio.ensure_future(gate.wait()), asyncio.ensure_future(request.cancel.wait())]
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=request.timeout_secs, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not done:
            return TaskResult.failure(f"timed out after {request.timeout_secs:g}s")
        if request.cancel.is_set():
            return TaskResult.failure("cancelled while running").model_copy(
                update={"cost_microdollars": self.cancel_cost_microdollars}
            )
        return None

    def call_cost_prior(self, model: str | None) -> int:
        """What the pool assumes a call costs before it has seen one."""
        return self.call_cost_microdollars

    async def release_slot(self, slot_id: SlotId) -> None:
        self.released_slots.append(slot_id)

    async def aclose(self) -> None:
        self.closed = True
