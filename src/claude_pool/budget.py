"""The pool's hard budget: reserve before dispatch, settle after.

A task's cap (passed to the CLI as ``--max-budget-usd``) never exceeds what is neither spent
nor reserved by other running tasks, so all caps together fit the budget, and concurrent tasks
cannot pass it by more than the API calls in flight when it is crossed (the CLI stops after
the call that crosses a cap). Spend itself lives in the store, so it survives restarts and is
shared by every pool process on that store; reservations are this process's own.
"""

from __future__ import annotations

from collections.abc import Callable

from claude_pool.errors import BudgetExhausted
from claude_pool.notify import Signal
from claude_pool.store import Store
from claude_pool.types import TaskId, TaskResult


class BudgetLedger:
    def __init__(self, store: Store, limit: Callable[[], int | None], *, poll_secs: float) -> None:
        self._store = store
        self._limit = limit
        """The budget in microdollars (None: no budget), read at each use so that a change to
        the pool's config takes effect."""
        self._poll_secs = poll_secs
        self._reserved: dict[TaskId, int] = {}
        self._settled = Signal()
        self._successes = 0
        self._success_spend = 0

    async def check(self) -> None:
        """Refuse new work once the budget is spent."""
        limit = self._limit()
        if limit is None:
            return
        spent = await self._store.get_spend()
        if spent >= limit:
            raise BudgetExhausted(spent, limit)

    async def reserve(
        self, task_id: TaskId, task_cap_usd: float | None, could_start: Callable[[], int]
    ) -> int | None:
        """The most this task may spend, in microdollars, reserved until :meth:`settle`.

        Within what is free, a task gets an even share over the ``could_start()`` slots that
        could start work now or, once tasks have succeeded, about what one costs (1.5x the
        average), waiting for running tasks to settle while less than that is free: better
        than starting a task that is bound to stop at its cap. Raises ``BudgetExhausted`` only
        when nothing is reserved and the budget is spent. None with no pool budget and no
        per-task cap.
        """
        task_cap = round(task_cap_usd * 1_000_000) if task_cap_usd is not None else None
        limit = self._limit()
        if limit is None:
            return task_cap
        wanted = self._success_spend * 3 // (2 * self._successes) if self._successes else 1
        while True:
            ticket = self._settled.ticket()
            spent = await self._store.get_spend()
            free = limit - spent - sum(self._reserved.values())
            if not self._reserved:
                if free <= 0:
                    raise BudgetExhausted(spent, limit)
                break
            if free >= wanted:
                break
            await Signal.wait(ticket, self._poll_secs)
        share = max(1, free // max(1, could_start()), min(free, wanted))
        cap = share if task_cap is None else min(task_cap, share)
        self._reserved[task_id] = cap
        return cap

    def settle(self, task_id: TaskId, result: TaskResult | None) -> None:
        """Release the task's reservation (its spend is in the store by now) and learn what a
        successful task costs."""
        if self._reserved.pop(task_id, None) is not None:
            self._settled.notify()
        if result is not None and result.success and result.cost_microdollars:
            self._successes += 1
            self._success_spend += result.cost_microdollars
