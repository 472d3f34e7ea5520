"""The pool's housekeeping loop: heartbeat, take over the tasks and chains of pool processes
that died, prune old events and finished webhook deliveries. Store failures are logged once
per incident; a damaged store stops the pool (see :class:`~claude_pool.lifecycle.Lifecycle`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from claude_pool.chain.model import SkillResolver
from claude_pool.chain.runner import ChainRunner
from claude_pool.errors import StoreDamaged, StoreError
from claude_pool.lifecycle import Lifecycle
from claude_pool.membership import Membership
from claude_pool.store import Store
from claude_pool.types import now_ms

log = logging.getLogger(__name__)

EVENT_PRUNE_EVERY_SECS = 3600.0
"""How often a pool deletes events older than ``Settings.event_retention_secs``."""


async def housekeeping(
    *,
    every_secs: float,
    event_retention_secs: float,
    membership: Membership,
    chains: ChainRunner,
    store: Store,
    lifecycle: Lifecycle,
    skill_resolver: Callable[[], SkillResolver],
) -> None:
    """Run until cancelled (or until the store is found damaged)."""
    pruned_at = 0.0
    failing = False
    while True:
        await asyncio.sleep(every_secs)
        try:
            await membership.beat()
            if lifecycle.accepting and chains.may_have_orphans():
                await chains.resume_orphans(await membership.live_workers(), skill_resolver())
            loop_now = asyncio.get_running_loop().time()
            if loop_now - pruned_at >= EVENT_PRUNE_EVERY_SECS:
                pruned_at = loop_now
                before = now_ms() - int(event_retention_secs * 1000)
                await store.prune_events(before)
                await store.prune_deliveries(before)
        except StoreDamaged as exc:
            lifecycle.fail(exc)
            return
        except StoreError as exc:
            if not failing:  # once per incident
                log.error("heartbeat failed (%s); will retry", exc)
            failing = True
            continue
        except Exception:
            log.exception("heartbeat failed; will retry")
            continue
        if failing:
            failing = False
            log.warning("heartbeat works again")


__all__ = ["EVENT_PRUNE_EVERY_SECS", "housekeeping"]
