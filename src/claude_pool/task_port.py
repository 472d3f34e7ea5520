"""What the parts that run work through the task queue need of it: the chain runner (a step is
a task) and the conflict resolver of merges (a resolution is a task). ``TaskQueue`` is one;
a test may give either part something smaller that has these methods."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from claude_pool.types import TaskId, TaskOverrides, TaskRecord


class TaskPort(Protocol):
    """Submit, wait for, and cancel tasks."""

    async def submit(
        self,
        prompt: str,
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
        *,
        review: bool = False,
        timeout: float | None = None,
        fresh_session: bool = False,
        cwd: str | Path | None = None,
        verify: str | None = None,
        depends_on: Iterable[TaskId | str] = (),
    ) -> TaskId: ...

    async def wait(
        self, task_id: TaskId | str, timeout: float | None = None, *, through_review: bool = False
    ) -> TaskRecord: ...

    async def cancel(self, task_id: TaskId | str) -> TaskRecord: ...

    def cancelled_with_caller(self) -> contextlib.AbstractAsyncContextManager[set[str]]:
        """A block whose tasks (their ids added to the set it gives) are cancelled if the
        caller is cancelled."""
        ...


__all__ = ["TaskPort"]
