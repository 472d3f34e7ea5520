"""Where a pool is in its life: open and taking work, draining, closed, or failed because its
store is damaged."""

from __future__ import annotations

import asyncio
import logging

from claude_pool.errors import PoolShutdown, StoreDamaged

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(self) -> None:
        self.accepting = False
        """Taking new work (set once the pool is open, cleared when it drains)."""
        self.closed = False
        self.failure: StoreDamaged | None = None
        """Why the pool stopped on its own: its store is damaged (nothing can be recorded)."""
        self.failed = asyncio.Event()
        """Set when :attr:`failure` is."""

    def fail(self, error: StoreDamaged) -> None:
        """The store is damaged: take no more work (the first report is logged, once)."""
        if self.failure is not None:
            return
        self.failure = error
        self.accepting = False
        self.failed.set()
        log.error("%s; this pool takes no more work", error)

    async def wait_failure(self) -> StoreDamaged:
        """Return :attr:`failure` once there is one."""
        await self.failed.wait()
        assert self.failure is not None
        return self.failure

    def check_accepting(self) -> None:
        """Raise ``StoreDamaged`` if the store is damaged, ``PoolShutdown`` unless the pool
        takes new work."""
        if self.failure is not None:
            raise StoreDamaged(str(self.failure))
        if self.closed or not self.accepting:
            raise PoolShutdown()


__all__ = ["Lifecycle"]
