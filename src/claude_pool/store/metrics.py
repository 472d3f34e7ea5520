"""Session metrics: what each figure means, written once for every store.

A store gathers per-(state, model) aggregates of the tasks in scope — in SQL where the data
lives in a database (:class:`MetricGroup` rows from a ``GROUP BY``), in Python for the memory
store (:func:`groups_of`) — and :func:`metrics_from_groups` turns them into
:class:`~claude_pool.types.SessionMetrics`.

Tasks in scope: ``since_ms <= created_at_ms < until_ms`` (each bound only when set; a task
without ``created_at_ms`` is out of scope when a bound is set), with any of the filter's tags
(an empty list is no filter), whose result's ``model`` equals ``model`` when set. Over them:

- ``total_tasks``: all of them (every state, pending_review included); the five state counts:
  tasks in that state.
- A task's cost is what all its runs cost: its result's ``cost_microdollars`` plus its earlier
  attempts' (a task rejected or queued again keeps what each run spent).
- ``total_spend_microdollars``: the sum of every task's cost, whatever its state (with or
  without a current result): what the ledger says was spent on them.
- "completed" figures use tasks in state completed that have a result: ``avg_cost`` =
  sum // count, ``max_cost``; ``avg_elapsed`` = sum // count, ``min/max_elapsed``,
  ``median_elapsed`` = the middle value, or for an even count the floor of the mean of the two
  middle values; ``avg_turns`` = sum / count (float). All are 0 when there is none.
- ``tasks_by_model`` and ``model_breakdown``: tasks (any state) whose result names a model;
  per model ``task_count``, ``total_cost``, ``avg_cost`` = total // count, ``avg_elapsed_ms``
  = sum // count, ``total_turns``. ``model_breakdown`` is ordered by total cost, highest
  first, then model name.
- ``session_start_ms`` as given; ``session_duration_ms`` = max(0, now - start).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from claude_pool.types import (
    MetricsFilter,
    ModelMetrics,
    SessionMetrics,
    TaskRecord,
    TaskState,
)


@dataclass
class MetricGroup:
    """Aggregates of the tasks in scope with one (state, model); the figures that need a
    result count only tasks that have one (``with_result``)."""

    state: str
    model: str | None
    tasks: int
    with_result: int = 0
    cost_sum: int = 0
    """The cost of the tasks with a result (their earlier attempts included)."""
    cost_max: int | None = None
    elapsed_sum: int = 0
    elapsed_min: int | None = None
    elapsed_max: int | None = None
    turns_sum: int = 0
    spent_sum: int = 0
    """The cost of every task of the group, with a current result or not."""


def normalise_tags(tags: list[str] | None) -> list[str] | None:
    """``None`` and an empty list both mean "no tag filter"."""
    return list(dict.fromkeys(tags)) if tags else None


def in_scope(record: TaskRecord, filter: MetricsFilter) -> bool:
    """Whether a task counts under ``filter`` (the rule in the module docstring)."""
    created = record.created_at_ms
    if filter.since_ms is not None and (created is None or created < filter.since_ms):
        return False
    if filter.until_ms is not None and (created is None or created >= filter.until_ms):
        return False
    tags = normalise_tags(filter.tags)
    if tags is not None and not any(tag in record.tags for tag in tags):
        return False
    return filter.model is None or (
        record.result is not None and record.result.model == filter.model
    )


def groups_of(
    records: Iterable[TaskRecord], filter: MetricsFilter | None
) -> tuple[list[MetricGroup], list[int]]:
    """The aggregates of ``records`` in scope, and the middle elapsed value(s) of the
    completed ones (what :func:`metrics_from_groups` takes)."""
    filter = filter or MetricsFilter()
    groups: dict[tuple[str, str | None], MetricGroup] = {}
    completed_elapsed: list[int] = []
    for record in records:
        if not in_scope(record, filter):
            continue
        result = record.result
        model = result.model if result is not None else None
        group = groups.get((record.state.value, model))
        if group is None:
            group = groups[(record.state.value, model)] = MetricGroup(record.state.value, model, 0)
        group.tasks += 1
        cost = record.total_cost_microdollars
        group.spent_sum += cost
        if result is None:
            continue
        group.with_result += 1
        group.cost_sum += cost
        group.cost_max = max(group.cost_max or 0, cost)
        group.elapsed_sum += result.elapsed_ms
        group.elapsed_min = min(
            result.elapsed_ms if group.elapsed_min is None else group.elapsed_min,
            result.elapsed_ms,
        )
        group.elapsed_max = max(group.elapsed_max or 0, result.elapsed_ms)
        group.turns_sum += result.turns_used
        if record.state is TaskState.COMPLETED:
            completed_elapsed.append(result.elapsed_ms)
    completed_elapsed.sort()
    return list(groups.values()), middle_values(completed_elapsed)


def middle_values(ordered: Sequence[int]) -> list[int]:
    """The one or two middle values of an ordered list (what a database store reads with
    ``ORDER BY ... LIMIT 2 OFFSET (n - 1) / 2``)."""
    if not ordered:
        return []
    start = (len(ordered) - 1) // 2
    return list(ordered[start : start + 2])


def metrics_from_groups(
    groups: Sequence[MetricGroup], middle: Sequence[int], session_start_ms: int, now_ms: int
) -> SessionMetrics:
    """Session metrics from the aggregates of the tasks in scope. ``middle`` is the one or
    two middle elapsed values of the completed tasks with a result, in order."""
    counts: dict[str, int] = {}
    for group in groups:
        counts[group.state] = counts.get(group.state, 0) + group.tasks
    metrics = SessionMetrics(
        total_tasks=sum(counts.values()),
        completed_tasks=counts.get("completed", 0),
        failed_tasks=counts.get("failed", 0),
        cancelled_tasks=counts.get("cancelled", 0),
        running_tasks=counts.get("running", 0),
        pending_tasks=counts.get("pending", 0),
        total_spend_microdollars=sum(g.spent_sum for g in groups),
        session_start_ms=session_start_ms,
        session_duration_ms=max(0, now_ms - session_start_ms),
    )
    completed = [g for g in groups if g.state == "completed" and g.with_result]
    count = sum(g.with_result for g in completed)
    if count:
        metrics.avg_cost_microdollars = sum(g.cost_sum for g in completed) // count
        metrics.max_cost_microdollars = max(g.cost_max or 0 for g in completed)
        metrics.avg_elapsed_ms = sum(g.elapsed_sum for g in completed) // count
        metrics.min_elapsed_ms = min(g.elapsed_min or 0 for g in completed)
        metrics.max_elapsed_ms = max(g.elapsed_max or 0 for g in completed)
        metrics.avg_turns = sum(g.turns_sum for g in completed) / count
        metrics.median_elapsed_ms = middle[0] if count % 2 else (middle[0] + middle[1]) // 2
    per_model: dict[str, list[int]] = {}
    for group in groups:
        if group.model is not None:
            totals = per_model.setdefault(group.model, [0, 0, 0, 0])
            for index, value in enumerate(
                (group.tasks, group.cost_sum, group.elapsed_sum, group.turns_sum)
            ):
                totals[index] += value
    breakdown = [
        ModelMetrics(
            model=model,
            task_count=tasks,
            total_cost_microdollars=cost,
            avg_cost_microdollars=cost // tasks,
            avg_elapsed_ms=elapsed // tasks,
            total_turns=turns,
        )
        for model, (tasks, cost, elapsed, turns) in per_model.items()
    ]
    breakdown.sort(key=lambda m: (-m.total_cost_microdollars, m.model))
    metrics.model_breakdown = breakdown
    metrics.tasks_by_model = {m.model: m.task_count for m in breakdown}
    return metrics


__all__ = [
    "MetricGroup",
    "groups_of",
    "in_scope",
    "metrics_from_groups",
    "middle_values",
    "normalise_tags",
]
