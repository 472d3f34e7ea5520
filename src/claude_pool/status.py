"""A pool at a glance: :class:`PoolStatus`, built from the engine's parts by :func:`status`,
and the session's metrics (:func:`session_metrics`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from claude_pool.config import effective_config
from claude_pool.engine import Engine
from claude_pool.ratelimit import combined
from claude_pool.types import (
    MetricsFilter,
    MetricsScope,
    PermissionMode,
    RateLimitState,
    SessionMetrics,
    SlotMode,
    SlotRecord,
    now_ms,
)


class PoolStatus(BaseModel):
    """A pool at a glance: its slots, the queue, spend against the budget, defaults."""

    worker_id: str
    slots: list[SlotRecord]
    tasks: dict[str, int] = Field(default_factory=dict)
    """Number of tasks in each state, across the whole store."""
    spend_microdollars: int = 0
    reserved_microdollars: int = 0
    """Budget held for running tasks (by every worker on the store) until they settle."""
    budget_microdollars: int | None = None
    budget_exhausted: bool = False
    """New work is refused: the budget is spent, or what is left cannot pay for another call
    and no running task holds budget that it may give back."""
    model: str | None = None
    """The pool's default model (tasks and slots may override it)."""
    permission_mode: PermissionMode | None = None
    slot_mode: SlotMode = SlotMode.PERSISTENT
    shutting_down: bool = False
    rate_limit: RateLimitState | None = None
    """Set while the API pushes back: tasks are retrying an API call (HTTP 429/529/5xx), in
    this pool process or in another one on the store, and dispatch waits until they get
    through or end."""
    latest_event_seq: int = 0
    """The latest event in the log once the task counts were read (resume
    ``events(after=...)`` from here: what follows happened after these figures)."""
    waiting: dict[str, list[str]] = Field(default_factory=dict)
    """Pending tasks held by their dependencies, with the dependencies each still waits for
    (of the oldest :data:`~claude_pool.queue.WAITING_SCAN` pending tasks)."""


async def status(engine: Engine) -> PoolStatus:
    """Slots, task counts, spend against the budget, defaults and rate-limit state."""
    config = engine.config
    counts = await engine.store.count_tasks()
    spent, reserved = await engine.store.budget_state()
    return PoolStatus(
        worker_id=engine.worker_id,
        slots=engine.slots.records,
        tasks={str(state): n for state, n in counts.items()},
        spend_microdollars=spent,
        reserved_microdollars=reserved,
        budget_microdollars=config.budget_microdollars,
        budget_exhausted=engine.budget.exhausted(
            config.budget_microdollars, spent, reserved, config.model
        ),
        model=config.model,
        permission_mode=effective_config(config).permission_mode,
        slot_mode=config.slot_mode,
        shutting_down=not engine.lifecycle.accepting,
        rate_limit=await rate_limit(engine),
        latest_event_seq=max(engine.events.latest_seq, await engine.store.latest_event_seq()),
        waiting=await engine.queue.waiting_for(),
    )


async def rate_limit(engine: Engine) -> RateLimitState | None:
    """This process's hold and those other live processes on the store publish."""
    own = engine.rate_limits.current()
    others = await engine.membership.rate_limits()
    return combined([own, *others] if own is not None else others)


async def session_metrics(engine: Engine, filter: MetricsFilter | None) -> SessionMetrics:
    """Metrics computed in the store (see :mod:`claude_pool.store.metrics`), of this pool's
    session (the tasks created since it opened) unless the filter gives a time range or asks
    for ``all_time``; the result's ``scope`` says which."""
    filter = filter or MetricsFilter()
    scope: MetricsScope
    if filter.since_ms is not None or filter.until_ms is not None:
        scope = "range"
    elif filter.all_time:
        scope = "all_time"
    else:
        scope = "session"
        filter = filter.model_copy(update={"since_ms": engine.started_ms})
    metrics = await engine.store.session_metrics(filter, engine.started_ms, now_ms())
    metrics.scope = scope
    return metrics


__all__ = ["PoolStatus", "rate_limit", "session_metrics", "status"]
