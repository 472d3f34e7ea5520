"""``claude-pool watch``: what happens in a pool, live, from the engine's events.

Every line or change it shows comes from an event of the store's event log (``Pool.events``:
this process's and, through the store's wake-ups, every other process's), told as
:func:`claude_pool.describe` tells it. Nothing polls: the terminal view re-reads the task
counts only after an event that changed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from claude_pool.cli.common import (
    ConfigOpt,
    JsonOpt,
    StoreOpt,
    _client,
    _run,
    _settings,
    err,
    out,
)
from claude_pool.events import (
    TASK_STATE_TYPES,
    Event,
    SlotAdded,
    SlotRemoved,
    SlotStateChanged,
    TaskClaimed,
    TaskProgress,
    TaskStarted,
    TaskTurn,
    describe,
    task_state_after,
)
from claude_pool.pool import Pool
from claude_pool.types import SlotId, SlotRecord, SlotState, TaskFilter, TaskState, now_ms

_COUNT_TYPES = frozenset({"task_queued", "task_claimed", *TASK_STATE_TYPES})
"""Events after which the number of tasks in some state has changed."""
_RECENT = 8


def _clock(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000).strftime("%H:%M:%S")


def _busy(counts: dict[str, int]) -> bool:
    return bool(counts.get(TaskState.PENDING, 0) or counts.get(TaskState.RUNNING, 0))


class _View:
    """The terminal view: the slots, the queue, the running tasks and the latest events, kept
    up to date by :meth:`apply`; rendered again by ``Live`` twice a second (for the clocks)."""

    def __init__(
        self, slots: list[SlotRecord], counts: dict[str, int], running: dict[str, str | None]
    ) -> None:
        self.slots: dict[str, SlotRecord] = {
            s.id: s for s in slots if s.state is not SlotState.STOPPED
        }
        self.counts = counts
        self.counts_stale = False
        # task id -> (slot id, when it was claimed or first seen, its latest activity)
        self.running: dict[str, tuple[str | None, int, str]] = {
            task: (slot, now_ms(), "running") for task, slot in running.items()
        }
        self.recent: deque[str] = deque(maxlen=_RECENT)

    def apply(self, event: Event) -> None:
        if event.type in _COUNT_TYPES:
            self.counts_stale = True
        task, slot = event.task_id, event.slot_id
        match event:
            case SlotAdded():
                self.slots[event.slot_id] = SlotRecord(id=SlotId(event.slot_id))
            case SlotRemoved():
                self.slots.pop(event.slot_id, None)
            case SlotStateChanged():
                self._set_slot(event.slot_id, SlotState(event.state), event.current_task)
            case TaskClaimed():
                self.running[event.task_id] = (slot, event.at_ms, "claimed")
                self._set_slot(event.slot_id, SlotState.BUSY, event.task_id)
            case TaskTurn():
                pass
            case TaskStarted() | TaskProgress() if task in self.running:
                claimed_by, since, _ = self.running[task]
                self.running[task] = (claimed_by, since, describe(event, subject=False))
        if task is not None and task_state_after(event) is not None:  # its run or review ended
            self.running.pop(task, None)
            if slot is not None and slot in self.slots:
                self._set_slot(slot, SlotState.IDLE, None)
        if event.type not in ("task_turn", "spend_recorded", "task_text"):
            self.recent.append(f"{_clock(event.at_ms)} {describe(event)}")

    def _set_slot(self, slot_id: str, state: SlotState, task: str | None) -> None:
        record = self.slots.get(slot_id) or SlotRecord(id=SlotId(slot_id))
        if state is SlotState.STOPPED:
            self.slots.pop(slot_id, None)
            return
        self.slots[slot_id] = record.model_copy(update={"state": state, "current_task": task})

    def __rich__(self) -> RenderableType:
        slots = Table(title="slots", title_justify="left", expand=False)
        for name in ("slot", "state", "name/role", "task"):
            slots.add_column(name, no_wrap=True)
        for record in self.slots.values():
            label = record.config.name or record.config.role or "-"
            slots.add_row(
                Text(record.id), Text(record.state), Text(label), Text(record.current_task or "-")
            )
        queue = ", ".join(f"{state} {n}" for state, n in sorted(self.counts.items()) if n)
        running = Table(title="running", title_justify="left", expand=True)
        running.add_column("task", no_wrap=True)
        running.add_column("slot", no_wrap=True)
        running.add_column("for", no_wrap=True, justify="right")
        running.add_column("doing", no_wrap=True, overflow="ellipsis", ratio=1)
        now = now_ms()
        for task, (slot, since, doing) in self.running.items():
            running.add_row(
                Text(task), Text(slot or "-"), f"{(now - since) / 1000:.0f}s", Text(doing)
            )
        recent = Text("\n".join(self.recent), no_wrap=True, overflow="ellipsis")
        return Group(slots, Text(f"tasks: {queue or 'none'}"), running, recent)


def watch(
    after: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="First replay the events after this sequence number (0: all that are kept), "
            "then go on live.",
        ),
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Stop once no task is queued or running.")
    ] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="One line per event, even on a terminal.")
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Watch the pool live: slots, queue and running tasks, from its events. On a terminal
    a view that keeps itself up to date; otherwise (or with --plain) one line per event, with
    its sequence number; --json prints each event as a JSON object a line. Ctrl-C stops."""
    settings = _settings(config, store=store)

    async def go() -> None:
        async with _client(settings, existing=True) as pool:
            if as_json or plain or not out.is_terminal:
                print_event = _json_line if as_json else _plain_line
                await _until_stopped(_follow(pool, print_event, after, count, until_idle))
                return
            running = await pool.list_tasks(TaskFilter(state=TaskState.RUNNING), 1000)
            view = _View(
                await pool.store.list_slots(),
                dict((await pool.status()).tasks),
                {r.id: r.slot_id for r in running},
            )
            with Live(view, console=out, refresh_per_second=2):
                await _until_stopped(_follow(pool, view.apply, after, count, until_idle, view))

    _run(go())


def _json_line(event: Event) -> None:
    print(event.model_dump_json(), flush=True)


def _plain_line(event: Event) -> None:
    out.print(f"{event.seq} {_clock(event.at_ms)} {describe(event)}", markup=False, highlight=False)


async def _until_stopped(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or Ctrl-C (SIGINT) or SIGTERM stops it."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _follow(
    pool: Pool,
    show: Callable[[Event], None],
    after: int | None,
    count: int | None,
    until_idle: bool,
    view: _View | None = None,
) -> None:
    """Show the events after ``after`` (None: from now on), then live; stop after ``count``
    of them, or (``until_idle``) once the log is read up to now and no task is queued or
    running."""
    status = await pool.status()
    now = status.latest_event_seq  # the log up to here is the past; what follows is live
    start = now if after is None else after  # from `now`, not from whenever the read begins
    counts = ", ".join(f"{s} {n}" for s, n in sorted(status.tasks.items()) if n) or "no tasks"
    err.print(
        f"watching {pool.settings.store}: {counts}; events after {start}",
        markup=False,
        highlight=False,
    )
    if until_idle and start >= now and not _busy(status.tasks):
        return
    shown = 0
    checked = False  # whether the idle check has run since the past was read
    idle_at: int | None = None  # no task was queued or running once the log reached here
    async for event in pool.events(after=start):
        caught_up = event.seq >= now
        if event.worker_id != pool.worker_id:  # not this watcher's own coming and going
            show(event)
            shown += 1
            if count is not None and shown >= count:
                return
        if not caught_up:
            continue
        if view is not None and view.counts_stale:
            view.counts = dict((await pool.status()).tasks)
            view.counts_stale = False
        if until_idle and idle_at is None and (not checked or event.type in _COUNT_TYPES):
            checked = True
            status = await pool.status()
            if not _busy(status.tasks):
                # Idle now; what led there (a task's end, say) may still be ahead in the log.
                idle_at = status.latest_event_seq
        if idle_at is not None and event.seq >= idle_at:
            return
