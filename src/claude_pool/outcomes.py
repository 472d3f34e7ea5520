"""What this pool process remembers about tasks it ended, so that waiting needs no read.

- final records: a task this process ended for good (completed, failed, cancelled never
  change), so that ``wait()`` returns it without reading the store back;
- refusals: why a task never ran (``BudgetExhausted``, ``NoSlotAvailable``), for ``run()`` to
  raise.

Both are bounded; the oldest entries are forgotten first.
"""

from __future__ import annotations

from claude_pool.errors import ClaudePoolError
from claude_pool.types import TaskId, TaskRecord

MAX_REMEMBERED = 10_000


class Outcomes:
    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._limit = limit
        self._final: dict[TaskId, TaskRecord] = {}
        self._errors: dict[TaskId, ClaudePoolError] = {}

    def ended(self, record: TaskRecord) -> None:
        self._final[record.id] = record
        while len(self._final) > self._limit:
            del self._final[next(iter(self._final))]

    def forget(self, task_id: TaskId) -> None:
        """The task is queued again: what it ended with is no longer its final record."""
        self._final.pop(task_id, None)
        self._errors.pop(task_id, None)

    def final(self, task_id: TaskId) -> TaskRecord | None:
        return self._final.get(task_id)

    def refused(self, task_id: TaskId, error: ClaudePoolError) -> None:
        self._errors[task_id] = error
        while len(self._errors) > self._limit:
            del self._errors[next(iter(self._errors))]

    def take_refusal(self, task_id: TaskId) -> ClaudePoolError | None:
        return self._errors.pop(task_id, None)


__all__ = ["MAX_REMEMBERED", "Outcomes"]
