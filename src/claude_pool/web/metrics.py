"""``GET /metrics``: the pool in Prometheus' text format (``prometheus-client``).

Gauges (tasks by state, slots by state, queue depth, rate limit, spend against the budget) are
read from :meth:`Pool.status` at each scrape. Counters and the duration histogram count the
domain events this process sees from the moment the HTTP face starts (its own and, through the
store, other workers'): the usual Prometheus reading, where a counter restarts with the process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from claude_pool.events import (
    Event,
    TaskApiRetry,
    TaskCancelled,
    TaskFinished,
    TaskHeldForReview,
)
from claude_pool.pool import Pool, PoolStatus
from claude_pool.types import SlotState, TaskState, microdollars_to_usd

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))
"""Task run times in seconds: Claude Code tasks take seconds to an hour."""


class _StatusCollector(Collector):
    """Gauges from the latest status snapshot (taken by the endpoint just before a scrape)."""

    def __init__(self, webhook_failures: Callable[[], int]) -> None:
        self.status: PoolStatus | None = None
        self._webhook_failures = webhook_failures

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily(
            "claude_pool_webhook_delivery_failures",
            "Webhook delivery attempts that failed (each retry counts).",
        )
        failures.add_metric([], self._webhook_failures())
        yield failures
        status = self.status
        if status is None:
            return
        tasks = GaugeMetricFamily(
            "claude_pool_tasks", "Tasks in the store, by state.", labels=["state"]
        )
        for state in TaskState:
            tasks.add_metric([str(state)], status.tasks.get(str(state), 0))
        yield tasks
        slots = GaugeMetricFamily(
            "claude_pool_slots", "This pool's slots, by state.", labels=["state"]
        )
        for slot_state in SlotState:
            count = sum(1 for slot in status.slots if slot.state is slot_state)
            slots.add_metric([str(slot_state)], count)
        yield slots
        yield GaugeMetricFamily(
            "claude_pool_queue_depth",
            "Tasks waiting for a slot.",
            value=status.tasks.get(str(TaskState.PENDING), 0),
        )
        yield GaugeMetricFamily(
            "claude_pool_rate_limited",
            "1 while dispatch waits because the API pushes back (429/529/5xx retries).",
            value=1 if status.rate_limit is not None else 0,
        )
        yield GaugeMetricFamily(
            "claude_pool_spend_usd", "Spend recorded in the store.",
            value=microdollars_to_usd(status.spend_microdollars),
        )  # fmt: skip
        if status.budget_microdollars is not None:
            yield GaugeMetricFamily(
                "claude_pool_budget_usd", "The pool's budget.",
                value=microdollars_to_usd(status.budget_microdollars),
            )  # fmt: skip
        yield GaugeMetricFamily(
            "claude_pool_budget_exhausted", "1 once new work is refused for lack of budget.",
            value=1 if status.budget_exhausted else 0,
        )  # fmt: skip


class PoolMetrics:
    """The registry behind ``/metrics`` and the listener that feeds its counters."""

    def __init__(self, pool: Pool, webhook_failures: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._pool = pool
        self._status = _StatusCollector(webhook_failures)
        self.registry.register(self._status)
        self.duration = Histogram(
            "claude_pool_task_duration_seconds",
            "Run time of tasks that finished (completed, failed or held for review).",
            ["state"], buckets=DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.spend = Counter(
            "claude_pool_spend_by_model_usd",
            "Spend of finished and cancelled tasks, by model.",
            ["model"], registry=self.registry,
        )  # fmt: skip
        self.retries = Counter(
            "claude_pool_api_retries",
            "API calls the Claude Code CLI retried (HTTP 429/529/5xx), by status.",
            ["status"], registry=self.registry,
        )  # fmt: skip
        self.finished = Counter(
            "claude_pool_tasks_finished",
            "Tasks that ended, by state.",
            ["state"], registry=self.registry,
        )  # fmt: skip
        self._remove = pool.add_listener(self.observe)

    def close(self) -> None:
        self._remove()

    def observe(self, event: Event) -> None:
        if isinstance(event, TaskFinished):
            self.duration.labels(str(event.state)).observe(event.elapsed_ms / 1000)
            self.spend.labels(event.model or "unknown").inc(
                microdollars_to_usd(event.cost_microdollars)
            )
            self.finished.labels(str(event.state)).inc()
        elif isinstance(event, TaskHeldForReview):
            self.duration.labels(str(TaskState.PENDING_REVIEW)).observe(event.elapsed_ms / 1000)
            self.spend.labels(event.model or "unknown").inc(
                microdollars_to_usd(event.cost_microdollars)
            )
        elif isinstance(event, TaskCancelled):
            self.spend.labels("unknown").inc(microdollars_to_usd(event.cost_microdollars))
            self.finished.labels(str(TaskState.CANCELLED)).inc()
        elif isinstance(event, TaskApiRetry):
            self.retries.labels(str(event.status or "unknown")).inc()

    async def render(self) -> bytes:
        self._status.status = await self._pool.status()
        return generate_latest(self.registry)


async def metrics_endpoint(request: Request) -> Response:
    metrics: PoolMetrics = request.app.state.metrics
    return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)


__all__ = ["DURATION_BUCKETS", "PoolMetrics", "metrics_endpoint"]
