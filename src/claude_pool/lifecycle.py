"""Where a pool is in its life: open and taking work, draining, or closed."""

from __future__ import annotations

from claude_pool.errors import PoolShutdown


class Lifecycle:
    def __init__(self) -> None:
        self.accepting = False
        """Taking new work (set once the pool is open, cleared when it drains)."""
        self.closed = False

    def check_accepting(self) -> None:
        """Raise ``PoolShutdown`` unless the pool takes new work."""
        if self.closed or not self.accepting:
            raise PoolShutdown()


__all__ = ["Lifecycle"]
