"""The pool's hard budget: reserve before dispatch, settle after — across every worker.

Before a task starts, the budget ledger reserves its cap (passed to the CLI as
``--max-budget-usd``) in the store, atomically with every other worker's reservations, so all
caps together stay within ``budget_microdollars`` whatever number of pool processes share the
store. Settling the task drops its reservation in the same write that records its spend.

No task is started that cannot finish a call: its cap is never below the pool's estimate of
one API call of its model (:class:`CallCosts`: the cost per call observed on this store, and
before any was seen, a prior from the model's price and a typical request). When what is left
cannot fund a call, a task waits for running tasks to settle (on their events, from any worker)
and is refused with ``BudgetExhausted`` once nothing is running that could free budget. The CLI
stops after the call that crosses a cap, so concurrent tasks cannot pass the budget by more
than the calls in flight when it is crossed.

The cap is a flag of the CLI process, so a new cap means a new process. A slot's live process
still allows what its cap was less what it spent since it started (or since ``/clear``, for a
task in a new conversation): where that lies between what a new cap would be at least and
about twice the slot's share of what is free, it is what is reserved, and the task runs in
that process, its reservation still exactly what the CLI enforces.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable

from claude_pool.errors import BudgetExhausted
from claude_pool.events import Event, TaskFinished
from claude_pool.notify import Signal
from claude_pool.pricing import ALIASES, estimate_cost_usd
from claude_pool.store import Store
from claude_pool.types import MetricsFilter, TaskId, now_ms

TYPICAL_CALL = {"cache_read_input_tokens": 15_000, "input_tokens": 2_000, "output_tokens": 500}
"""The token usage of a typical Claude Code API call (its system prompt and tools mostly read
from the prompt cache): what a call of a model none of whose calls has been seen yet is
assumed to use, unless the executor knows better (``call_cost_prior``)."""


def typical_call_cost(model: str | None) -> int:
    """What a typical Claude Code call of ``model`` costs, in microdollars."""
    return max(1, round(estimate_cost_usd(model, [TYPICAL_CALL]) * 1_000_000))


CALL_MARGIN = 1.25
"""Where the budget allows, a cap covers this many times the estimated cost of one call (and
it is never below one call)."""

TASK_MARGIN = 1.5
"""Where the budget allows, a cap covers this many times what a task of the model has cost."""

REUSE_SHARE = 2
"""What a slot's live process still allows is reserved as the next task's cap (sparing a new
process) when it is at most this many times the slot's share of what is free."""

_SAMPLES = 50
_WAIT_FALLBACK_SECS = 5.0
"""Longest wait for a settlement before looking at the store again (events may be lost)."""


_ANY = "*"
"""Observations of every model together: the estimate for a model not seen yet (or the pool's
default, whose name the pool may not know)."""


def _key(model: str | None) -> str | None:
    """Models by their undated name (the CLI reports ``claude-x-4-5-20250929`` for a request
    for ``claude-x-4-5``)."""
    if model is None:
        return None
    name = ALIASES.get(model, model)
    return _DATED.sub("", name)


_DATED = re.compile(r"-\d{8}$")


class CallCosts:
    """What one API call, and one task, of each model costs, as observed."""

    def __init__(self, prior: Callable[[str | None], int] = typical_call_cost) -> None:
        self._prior = prior
        self._per_call: dict[str | None, deque[float]] = {}
        self._per_task: dict[str | None, deque[int]] = {}

    def observe(self, model: str | None, cost_microdollars: int, calls: int) -> None:
        if cost_microdollars <= 0 or calls <= 0:
            return
        for key in {_key(model), _ANY}:
            self._per_call.setdefault(key, deque(maxlen=_SAMPLES)).append(cost_microdollars / calls)
            self._per_task.setdefault(key, deque(maxlen=_SAMPLES)).append(cost_microdollars)

    def per_call(self, model: str | None) -> int:
        """The estimated cost of one call of ``model``, in microdollars (at least 1): what
        its calls cost on average, else what any model's did, else the prior."""
        seen = self._per_call.get(_key(model)) or self._per_call.get(_ANY)
        if seen:
            return max(1, math.ceil(sum(seen) / len(seen)))
        return max(1, self._prior(model))

    def per_task(self, model: str | None) -> int:
        """What a task of ``model`` has cost on average (0 before any was seen)."""
        seen = self._per_task.get(_key(model)) or self._per_task.get(_ANY)
        return sum(seen) // len(seen) if seen else 0


class BudgetLedger:
    def __init__(
        self,
        store: Store,
        limit: Callable[[], int | None],
        worker_id: str,
        *,
        prior: Callable[[str | None], int] = typical_call_cost,
    ) -> None:
        self._store = store
        self._limit = limit
        """The budget in microdollars (None: no budget), read at each use so that a change to
        the pool's config takes effect."""
        self._worker_id = worker_id
        self.costs = CallCosts(prior)
        self._settled = Signal()
        self._reserved: set[TaskId] = set()

    def on_event(self, event: Event) -> None:
        """Bus listener: a task settled somewhere (budget may be free now); learn what calls
        cost, from every worker's tasks."""
        if isinstance(event, TaskFinished):
            self.costs.observe(event.model, event.cost_microdollars, event.turns_used)
        self._settled.notify()

    async def check(self, model: str | None) -> None:
        """Refuse new work once the budget is spent: once what is left cannot pay for a call
        of ``model`` and no running task holds budget that it may give back."""
        limit = self._limit()
        if limit is None:
            return
        spent, reserved = await self._store.budget_state()
        if self.exhausted(limit, spent, reserved, model):
            raise BudgetExhausted(spent, limit)

    def exhausted(self, limit: int | None, spent: int, reserved: int, model: str | None) -> bool:
        """Whether new work is refused: the budget is spent, or what is left cannot pay for a
        call of ``model`` and no running task holds budget it may give back."""
        if limit is None:
            return False
        return spent >= limit or (reserved == 0 and limit - spent < self.costs.per_call(model))

    async def reserve(
        self,
        task_id: TaskId,
        model: str | None,
        task_cap_usd: float | None,
        could_start: Callable[[], int],
        live: Callable[[], int | None] = lambda: None,
    ) -> int | None:
        """The most this task may spend, in microdollars, reserved in the store until it
        settles. None with no pool budget and no per-task cap.

        The cap is at least one estimated call, and where the budget allows, one call and what
        a task of the model has cost (each with a margin) or an even share of what is free
        among the slots that could start work now. ``live`` tells what the slot's live CLI
        process still allows a task (None: nothing); that is the cap when it is no less than
        the cap would be otherwise (or than one call and a task, with their margins) and no
        more than what is free, the per-task cap, and :data:`REUSE_SHARE` shares. While less
        than one call is free, waits for running tasks to settle; ``BudgetExhausted`` once
        nothing is reserved and still less than a call is free.
        """
        task_cap = round(task_cap_usd * 1_000_000) if task_cap_usd is not None else None
        limit = self._limit()
        if limit is None:
            return task_cap
        while True:
            ticket = self._settled.ticket()
            spent, reserved = await self._store.budget_state()
            free = limit - spent - reserved
            call = self.costs.per_call(model)
            if free >= call:
                wanted = max(
                    math.ceil(call * CALL_MARGIN),
                    math.ceil(self.costs.per_task(model) * TASK_MARGIN),
                )
                share = free // max(1, could_start())
                cap = min(free, max(wanted, share))
                if task_cap is not None:
                    cap = min(cap, task_cap)
                left = live()
                if left is not None and min(cap, wanted) <= left <= min(
                    free, max(cap, REUSE_SHARE * share), task_cap if task_cap is not None else free
                ):
                    cap = left
                if await self._store.reserve_budget(task_id, self._worker_id, cap, limit, now_ms()):
                    self._reserved.add(task_id)
                    return cap
                continue  # another worker reserved meanwhile: look again
            if reserved == 0:
                raise BudgetExhausted(spent, limit)
            await Signal.wait(ticket, _WAIT_FALLBACK_SECS)

    def holds(self, task_id: TaskId) -> bool:
        """Whether ``task_id`` has budget reserved here."""
        return task_id in self._reserved

    def settled(self, task_id: TaskId) -> None:
        """The task's settlement (which dropped its reservation) is written."""
        self._reserved.discard(task_id)
        self._settled.notify()

    async def learn_from_history(self) -> None:
        """Start the estimates from what calls cost on this store before (with a budget only:
        it reads the store's metrics)."""
        if self._limit() is None:
            return
        metrics = await self._store.session_metrics(MetricsFilter(), 0, now_ms())
        for model in metrics.model_breakdown:
            self.costs.observe(model.model, model.total_cost_microdollars, model.total_turns)


__all__ = [
    "CALL_MARGIN",
    "REUSE_SHARE",
    "TASK_MARGIN",
    "TYPICAL_CALL",
    "BudgetLedger",
    "CallCosts",
    "typical_call_cost",
]
