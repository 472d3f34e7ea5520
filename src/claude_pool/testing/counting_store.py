"""A store wrapper that counts the calls made to each store method (for tests and benchmarks).

``CountingStore(inner)`` is a complete store: every method is the inner store's, counted. Reads
and writes are told apart by name (:data:`WRITES`), and the wake-up channel's probes are the
inner store's own (a SQLite store counts them in ``wakeups().probes``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from claude_pool.store.base import Store

WRITES = frozenset(
    {
        "insert_task", "claim_task", "transition_task", "settle_task", "recover_tasks",
        "heartbeat_worker", "remove_worker", "upsert_slot", "update_slot", "add_slot_cost",
        "delete_slot", "add_spend", "context_set", "context_delete", "send_message",
        "append_events", "prune_events", "upsert_chain", "claim_chain", "open", "close",
        "reserve_budget", "release_budget", "set_rate_limit", "put_webhook", "delete_webhook",
        "claim_deliveries", "finish_delivery", "prune_deliveries",
    }
)  # fmt: skip
"""Store methods that change something (the rest read)."""

_DRAINING = "read_messages"  # a read, or a write with drain=True


class CountingStore:
    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        """Calls begun and not yet returned."""

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            key = name
            if name == _DRAINING and kwargs.get("drain"):
                key = "read_messages(drain)"
            self.calls[key] += 1
            self.in_flight += 1
            try:
                return await cast(Callable[..., Any], attribute)(*args, **kwargs)
            finally:
                self.in_flight -= 1

        return counted

    @property
    def reads(self) -> int:
        """Calls that only read."""
        return sum(n for name, n in self.calls.items() if name not in WRITES and "(" not in name)

    @property
    def writes(self) -> int:
        return sum(self.calls.values()) - self.reads

    def reset(self) -> None:
        self.calls.clear()

    async def quiet(self, turns: int = 100, limit: int = 100_000) -> None:
        """Return once no call has been in flight or begun for ``turns`` turns of the event
        loop in a row (what a pool still does after a task: its slot asking for more work,
        the lookup of the task's dependents, has landed)."""
        calm = 0
        seen = sum(self.calls.values())
        for _ in range(limit):
            await asyncio.sleep(0)
            total = sum(self.calls.values())
            calm = calm + 1 if not self.in_flight and total == seen else 0
            seen = total
            if calm >= turns:
                return
        raise AssertionError(f"the store never went quiet: {self.in_flight} call(s) in flight")

    def as_store(self) -> Store:
        """This wrapper, typed as the store it stands for."""
        return cast(Store, self)


__all__ = ["WRITES", "CountingStore"]
