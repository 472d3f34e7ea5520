"""Task dependencies: a task that waits for others (``submit(..., depends_on=[ids])``).

The rules:

- A dependency must exist when the dependent is submitted (an unknown id is refused), so the
  graph can only grow by adding tasks after the ones they wait for: no cycle can form, and a
  task can never wait for itself. The same id twice is refused too.
- The store's claim skips a task until every dependency has completed (or, with
  ``on_dependency_failure="run"``, has ended in any way): that check is part of the atomic
  claim, so it holds across restarts and across every worker sharing the store.
- When a dependency fails or is cancelled, a dependent with the default
  ``on_dependency_failure="cancel"`` is cancelled, with a reason naming that dependency (its
  own dependents follow, one event after the other). A task held for review is not completed
  yet: its dependents wait for the approval.
- The prompt may carry ``{{<task id>.output}}`` for each dependency: the text is replaced by
  that dependency's output each time the task runs (the stored prompt keeps the placeholder).
  A placeholder naming a task that is not among ``depends_on`` is refused at submission.

Every pool process reacts to the end of every task, its own or (through the event log)
another process's: it settles the pending dependents, waking one of its slots for each that
became claimable. At open, it settles every pending task with dependencies, which covers a
process that died between a dependency ending and its dependents being settled.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from claude_pool.chain.model import ChainSpec
from claude_pool.eventlog import EventLog
from claude_pool.events import Event, TaskCancelled, task_state_after
from claude_pool.outcomes import Outcomes
from claude_pool.store.base import Store, StoredTask
from claude_pool.types import DependencyFailure, TaskId, TaskRecord, TaskResult, TaskState, now_ms

log = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+?)\.output\s*\}\}")
"""``{{<task id>.output}}`` in a prompt: the output of that dependency."""

DEPENDENCY_FAILURES: tuple[DependencyFailure, ...] = ("cancel", "run")

_ENDED_BADLY = (TaskState.FAILED, TaskState.CANCELLED)


def referenced_outputs(prompt: str) -> list[str]:
    """The task ids whose output ``prompt`` refers to, in order of first mention."""
    return list(dict.fromkeys(match[1] for match in PLACEHOLDER.finditer(prompt)))


def render(prompt: str, outputs: Mapping[str, str]) -> str:
    """``prompt`` with each ``{{<task id>.output}}`` of ``outputs`` replaced by that output."""
    return PLACEHOLDER.sub(lambda m: outputs.get(m[1], m[0]), prompt)


async def render_prompt(store: Store, record: TaskRecord, prompt: str) -> str:
    """``prompt`` (the task's, or what it became) with its dependencies' outputs filled in."""
    wanted = [i for i in referenced_outputs(prompt) if i in record.depends_on]
    if not wanted:
        return prompt
    outputs: dict[str, str] = {}
    for dependency_id in wanted:
        stored = await store.get_task(TaskId(dependency_id))
        result = stored.record.result if stored is not None else None
        outputs[dependency_id] = result.output if result is not None else ""
    return render(prompt, outputs)


def blocking(record: TaskRecord, states: Mapping[TaskId, TaskState | None]) -> list[TaskId]:
    """The dependencies the task still waits for, given their states."""
    return [
        dependency_id
        for dependency_id in record.depends_on
        if states.get(dependency_id) is not TaskState.COMPLETED
        and not (
            record.on_dependency_failure == "run" and states.get(dependency_id) in _ENDED_BADLY
        )
    ]


class Dependencies:
    """Checks dependencies at submission and settles dependents as their dependencies end.

    ``on_unblocked(stored)`` is called (in this process) for each pending task whose
    dependencies no longer hold it: a slot here should look for it."""

    def __init__(
        self,
        *,
        store: Store,
        events: EventLog,
        outcomes: Outcomes,
        on_unblocked: Callable[[StoredTask], None],
    ) -> None:
        self._store = store
        self._events = events
        self._outcomes = outcomes
        self._on_unblocked = on_unblocked
        self._ended: asyncio.Queue[TaskId] = asyncio.Queue()

    # ── submission ───────────────────────────────────────────────────

    async def check(
        self, depends_on: Iterable[TaskId | str], prompt: str, on_failure: str
    ) -> list[TaskId]:
        """The dependencies as ids, or ``ValueError`` saying what is wrong with them."""
        if on_failure not in DEPENDENCY_FAILURES:
            raise ValueError(f"on_dependency_failure must be 'cancel' or 'run', got {on_failure!r}")
        if isinstance(depends_on, str):
            raise ValueError("depends_on must be a list of task ids, not one string")
        ids = [TaskId(str(i)) for i in depends_on]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"depends_on names {', '.join(repeated)} more than once")
        for dependency_id in ids:
            stored = await self._store.get_task(dependency_id)
            if stored is None and dependency_id.startswith("chain-"):  # new_chain_id()'s shape
                raise ValueError(
                    f"depends_on names {dependency_id}, a chain; depends_on takes task ids (a "
                    "chain's steps are tasks: wait for the chain, or give the chain's own "
                    "depends_on to make it wait)"
                )
            if stored is None:
                raise ValueError(
                    f"depends_on names {dependency_id}, which is no task in this store; a "
                    "dependency must be submitted before the tasks that wait for it (so no "
                    "cycle can form)"
                )
            state = stored.record.state
            if on_failure == "cancel" and state in _ENDED_BADLY:
                raise ValueError(
                    f"dependency {dependency_id} already {state}; retry it first, or submit "
                    "with on_dependency_failure='run'"
                )
        unknown = [i for i in referenced_outputs(prompt) if i not in ids]
        if unknown:
            names = ", ".join("{{" + i + ".output}}" for i in unknown)
            raise ValueError(
                f"the prompt refers to {names}, but only the outputs of its dependencies "
                f"can be used ({', '.join(ids) or 'none given'}); add them to depends_on"
            )
        return ids

    async def check_chain(self, spec: ChainSpec) -> None:
        """Refuse (``ValueError``) a chain whose steps name unknown or failed dependencies,
        at submission rather than when the step runs."""
        for step in spec.steps:
            await self.check(spec.step_dependencies(step), step.prompt or "", "cancel")

    async def queued(self, stored: StoredTask) -> None:
        """A task with dependencies was just inserted: settle it at once (its dependencies
        may all be done, or one may have failed while it was being submitted)."""
        await self._settle(stored)

    # ── reacting to tasks that end ───────────────────────────────────

    def on_event(self, event: Event) -> None:
        """Bus listener: a task ended (here or in another process sharing the store)."""
        state = task_state_after(event)
        if event.task_id is not None and state is not None and state.is_terminal:
            self._ended.put_nowait(TaskId(event.task_id))

    async def run(self) -> None:
        """Settle the dependents of each task that ends (a background task of the pool)."""
        while True:
            task_id = await self._ended.get()
            try:
                for stored in await self._store.dependent_tasks(task_id):
                    await self._settle(stored)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task %s: settling the tasks that depend on it failed", task_id)

    async def sweep(self) -> None:
        """Settle every pending task with dependencies (at open: what a dead process left)."""
        for stored in await self._store.pending_tasks():
            if stored.record.depends_on:
                await self._settle(stored)

    async def waiting_for(self, records: Sequence[TaskRecord]) -> dict[str, list[TaskId]]:
        """For each pending task among ``records`` that waits, what it waits for."""
        waiting: dict[str, list[TaskId]] = {}
        for record in records:
            if record.state is TaskState.PENDING and record.depends_on:
                blockers = blocking(record, await self._states(record.depends_on))
                if blockers:
                    waiting[record.id] = blockers
        return waiting

    async def _states(self, ids: Iterable[TaskId]) -> dict[TaskId, TaskState | None]:
        states: dict[TaskId, TaskState | None] = {}
        for dependency_id in ids:
            stored = await self._store.get_task(dependency_id)
            states[dependency_id] = stored.record.state if stored is not None else None
        return states

    async def _settle(self, stored: StoredTask) -> None:
        record = stored.record
        states = await self._states(record.depends_on)
        if record.on_dependency_failure == "cancel":
            for dependency_id in record.depends_on:
                state = states[dependency_id]
                if state in _ENDED_BADLY or state is None:
                    await self._cancel(record.id, dependency_id, state)
                    return
        if not blocking(record, states):
            self._on_unblocked(stored)

    async def _cancel(
        self, task_id: TaskId, dependency_id: TaskId, state: TaskState | None
    ) -> None:
        how = "is missing" if state is None else str(state)
        reason = f"dependency {dependency_id} {how}"
        cancelled = await self._events.write(
            lambda batch: self._store.transition_task(
                task_id, {TaskState.PENDING}, TaskState.CANCELLED, now_ms=now_ms(),
                result=TaskResult.failure(reason), events=batch,
            ),
            TaskCancelled(task_id=task_id, reason=reason),
        )  # fmt: skip
        if cancelled is not None:
            log.info("task %s cancelled: %s", task_id, reason)
            self._outcomes.ended(cancelled)


__all__ = [
    "PLACEHOLDER",
    "Dependencies",
    "blocking",
    "referenced_outputs",
    "render",
    "render_prompt",
]
