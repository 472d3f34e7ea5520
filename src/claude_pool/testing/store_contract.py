"""The contract every :class:`~claude_pool.store.base.Store` must meet, as a pytest suite.

Every store shipped with claude-pool runs it, and a third-party store can too: subclass
:class:`StoreContract` in a test module (its name must start with ``Test``) and provide a
``store`` fixture that yields an opened, empty store::

    import pytest_asyncio
    from claude_pool.testing.store_contract import StoreContract

    class TestMyStore(StoreContract):
        @pytest_asyncio.fixture
        async def store(self):
            store = MyStore(...)
            await store.open()
            yield store
            await store.close()

Tests need pytest and pytest-asyncio. They pass timestamps explicitly, so they are
deterministic.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import pytest

from claude_pool.errors import StoreError
from claude_pool.events import (
    ContextChanged,
    Event,
    MessageSent,
    SpendRecorded,
    TaskCancelled,
    TaskFinished,
    TaskQueued,
    TaskRequeued,
    TaskText,
    UnknownEvent,
    WorkerLost,
    parse_event,
)
from claude_pool.store.base import (
    UNSET,
    DeliveryState,
    Requeue,
    Store,
    StoredTask,
    TaskTarget,
    Webhook,
)
from claude_pool.types import (
    MetricsFilter,
    ModelMetrics,
    RateLimitState,
    SlotConfig,
    SlotId,
    SlotRecord,
    SlotState,
    TaskFilter,
    TaskId,
    TaskOverrides,
    TaskRecord,
    TaskResult,
    TaskState,
    VerificationRun,
    new_task_id,
)

T0 = 1_700_000_000_000
"""A fixed "now" for the tests (ms since the epoch)."""

_counter = itertools.count(1)


def make_task(
    prompt: str = "do something",
    *,
    task_id: str | None = None,
    state: TaskState = TaskState.PENDING,
    priority: int = 0,
    target: TaskTarget | None = None,
    tags: list[str] | None = None,
    created_at_ms: int | None = T0,
    result: TaskResult | None = None,
    slot_id: str | None = None,
    **stored: Any,
) -> StoredTask:
    """A task to insert; every field not given keeps its default."""
    record = TaskRecord(
        id=TaskId(task_id or new_task_id()),
        prompt=prompt,
        state=state,
        tags=tags or [],
        created_at_ms=created_at_ms,
        result=result,
        slot_id=SlotId(slot_id) if slot_id else None,
    )
    return StoredTask(record=record, priority=priority, target=target or TaskTarget(), **stored)


def make_result(
    cost: int = 0,
    elapsed: int = 0,
    turns: int = 0,
    model: str | None = None,
    success: bool = True,
) -> TaskResult:
    return TaskResult(
        output=f"output {next(_counter)}",
        success=success,
        cost_microdollars=cost,
        elapsed_ms=elapsed,
        turns_used=turns,
        model=model,
    )


def slot_record(slot_id: str, **fields: Any) -> SlotRecord:
    return SlotRecord(id=SlotId(slot_id), **fields)


async def claim(store: Store, slot: str = "slot-a", *, role: str | None = None,
                name: str | None = None, worker: str = "worker-1",
                now: int = T0 + 10) -> StoredTask | None:  # fmt: skip
    return await store.claim_task(SlotId(slot), role, name, worker, now)


@pytest.mark.asyncio
class StoreContract:
    """Behaviour shared by every store. Subclasses provide the ``store`` fixture."""

    # ── tasks: insert, get, list, count ──────────────────────────────

    async def test_insert_assigns_increasing_seq_and_get_returns_the_same_task(
        self, store: Store
    ) -> None:
        config = TaskOverrides(model="m1", allowed_tools=["Read"], max_budget_usd=0.5)
        first = make_task(
            "first",
            priority=3,
            target=TaskTarget(role="reviewer"),
            tags=["a", "b"],
            timeout_secs=12.5,
            assignment_timeout_secs=7.0,
            fresh_session=True,
        )
        first.record.config = config
        first.record.review_required = True
        first.record.max_rejections = 5
        first.record.original_prompt = "first"
        a = await store.insert_task(first)
        b = await store.insert_task(make_task("second"))
        assert a.seq > 0
        assert b.seq > a.seq

        got = await store.get_task(a.record.id)
        assert got is not None
        assert got == a
        assert got.record.config == config
        assert got.priority == 3
        assert got.target == TaskTarget(role="reviewer")
        assert got.timeout_secs == 12.5
        assert got.assignment_timeout_secs == 7.0
        assert got.fresh_session is True
        assert got.claimed_by is None
        assert got.record.tags == ["a", "b"]

    async def test_insert_does_not_keep_a_reference_to_the_caller_object(
        self, store: Store
    ) -> None:
        task = make_task("original")
        await store.insert_task(task)
        task.record.prompt = "changed after insert"
        got = await store.get_task(task.record.id)
        assert got is not None
        assert got.record.prompt == "original"
        got.record.prompt = "changed after get"
        again = await store.get_task(task.record.id)
        assert again is not None
        assert again.record.prompt == "original"

    async def test_a_task_with_a_result_round_trips_exactly(self, store: Store) -> None:
        result = make_result(cost=123, elapsed=456, turns=7, model="claude-x", success=False)
        result = result.with_failure_details("claude -p", 2, "boom").with_session_id("sess-1")
        task = make_task(state=TaskState.FAILED, result=result, slot_id="slot-z")
        task.record.started_at_ms = T0 + 1
        task.record.completed_at_ms = T0 + 2
        await store.insert_task(task)
        got = await store.get_task(task.record.id)
        assert got is not None
        assert got.record == task.record
        assert got.record.result is not None
        assert got.record.result.model_dump_json() == result.model_dump_json()

    async def test_inserting_a_duplicate_id_is_a_store_error(self, store: Store) -> None:
        task = make_task()
        await store.insert_task(task)
        with pytest.raises(StoreError, match="already exists"):
            await store.insert_task(make_task(task_id=task.record.id))

    async def test_get_unknown_task_is_none(self, store: Store) -> None:
        assert await store.get_task(TaskId("task-missing")) is None

    async def test_list_tasks_is_in_submission_order_with_limit_and_offset(
        self, store: Store
    ) -> None:
        ids = [(await store.insert_task(make_task(f"p{i}", priority=i % 3))).record.id
               for i in range(7)]  # fmt: skip
        assert [t.id for t in await store.list_tasks()] == ids
        assert [t.id for t in await store.list_tasks(limit=3)] == ids[:3]
        assert [t.id for t in await store.list_tasks(limit=3, offset=5)] == ids[5:]
        assert await store.list_tasks(limit=0) == []
        assert await store.list_tasks(offset=7) == []
        newest = [t.id for t in await store.list_tasks(limit=3, newest_first=True)]
        assert newest == ids[::-1][:3]
        assert [t.id for t in await store.list_tasks(offset=5, newest_first=True)] == ids[1::-1]

    async def test_list_tasks_filters_by_state_slot_and_any_tag(self, store: Store) -> None:
        a = await store.insert_task(make_task("a", tags=["red", "big"]))
        b = await store.insert_task(make_task("b", tags=["blue"]))
        c = await store.insert_task(make_task("c", tags=["red"]))
        d = await store.insert_task(make_task("d"))
        await claim(store, "slot-1")  # claims a
        await claim(store, "slot-2")  # claims b

        def ids(records: list[TaskRecord]) -> list[str]:
            return [r.id for r in records]

        running = await store.list_tasks(TaskFilter(state=TaskState.RUNNING))
        assert ids(running) == [a.record.id, b.record.id]
        pending = await store.list_tasks(TaskFilter(state=TaskState.PENDING))
        assert ids(pending) == [c.record.id, d.record.id]
        on_slot_2 = await store.list_tasks(TaskFilter(slot_id=SlotId("slot-2")))
        assert ids(on_slot_2) == [b.record.id]
        red = await store.list_tasks(TaskFilter(tags=["red"]))
        assert ids(red) == [a.record.id, c.record.id]
        red_or_blue = await store.list_tasks(TaskFilter(tags=["red", "blue"]))
        assert ids(red_or_blue) == [a.record.id, b.record.id, c.record.id]
        red_pending = await store.list_tasks(TaskFilter(tags=["red"], state=TaskState.PENDING))
        assert ids(red_pending) == [c.record.id]
        assert await store.list_tasks(TaskFilter(tags=["green"])) == []
        assert len(await store.list_tasks(TaskFilter(tags=[]))) == 4
        assert ids(await store.list_tasks(TaskFilter(tags=["red"]), limit=1, offset=1)) == [
            c.record.id
        ]

    async def test_a_task_listed_once_even_when_several_tags_match(self, store: Store) -> None:
        await store.insert_task(make_task(tags=["x", "y", "x"]))
        assert len(await store.list_tasks(TaskFilter(tags=["x", "y"]))) == 1

    async def test_count_tasks_counts_each_state(self, store: Store) -> None:
        assert {k: v for k, v in (await store.count_tasks()).items() if v} == {}
        for _ in range(3):
            await store.insert_task(make_task())
        await store.insert_task(make_task(state=TaskState.COMPLETED, result=make_result()))
        await claim(store)
        counts = {k: v for k, v in (await store.count_tasks()).items() if v}
        assert counts == {TaskState.PENDING: 2, TaskState.RUNNING: 1, TaskState.COMPLETED: 1}

    # ── claims ───────────────────────────────────────────────────────

    async def test_claim_takes_highest_priority_then_oldest(self, store: Store) -> None:
        low = await store.insert_task(make_task("low", priority=0))
        high1 = await store.insert_task(make_task("high1", priority=5))
        mid = await store.insert_task(make_task("mid", priority=2))
        high2 = await store.insert_task(make_task("high2", priority=5))
        negative = await store.insert_task(make_task("negative", priority=-1))
        order = []
        while (task := await claim(store)) is not None:
            order.append(task.record.id)
        assert order == [r.record.id for r in (high1, high2, mid, low, negative)]

    async def test_claim_marks_the_task_running_on_the_slot(self, store: Store) -> None:
        task = await store.insert_task(make_task(tags=["t"]))
        claimed = await claim(store, "slot-9", worker="worker-7", now=T0 + 99)
        assert claimed is not None
        assert claimed.record.id == task.record.id
        assert claimed.record.state is TaskState.RUNNING
        assert claimed.record.slot_id == "slot-9"
        assert claimed.record.started_at_ms == T0 + 99
        assert claimed.claimed_by == "worker-7"
        assert claimed.seq == task.seq
        assert await store.get_task(task.record.id) == claimed

    async def test_claim_returns_none_when_nothing_is_pending(self, store: Store) -> None:
        assert await claim(store) is None
        await store.insert_task(make_task(state=TaskState.COMPLETED, result=make_result()))
        assert await claim(store) is None

    async def test_claim_honours_slot_role_and_name_targets(self, store: Store) -> None:
        for_slot = await store.insert_task(make_task(target=TaskTarget(slot_id=SlotId("s2"))))
        for_role = await store.insert_task(make_task(target=TaskTarget(role="reviewer")))
        for_name = await store.insert_task(make_task(target=TaskTarget(name="alice")))
        for_both = await store.insert_task(
            make_task(target=TaskTarget(role="reviewer", name="bob"))
        )

        assert await claim(store, "s1") is None
        assert await claim(store, "s1", role="writer", name="carol") is None
        got = await claim(store, "s1", role="reviewer", name="carol")
        assert got is not None
        assert got.record.id == for_role.record.id
        assert await claim(store, "s1", role="reviewer", name="carol") is None
        got = await claim(store, "s3", role="reviewer", name="bob")
        assert got is not None
        assert got.record.id == for_both.record.id
        got = await claim(store, "s4", name="alice")
        assert got is not None
        assert got.record.id == for_name.record.id
        got = await claim(store, "s2")
        assert got is not None
        assert got.record.id == for_slot.record.id

    async def test_claim_skips_tasks_targeted_elsewhere_to_reach_later_ones(
        self, store: Store
    ) -> None:
        await store.insert_task(make_task(priority=9, target=TaskTarget(slot_id=SlotId("other"))))
        free = await store.insert_task(make_task(priority=0))
        got = await claim(store, "mine")
        assert got is not None
        assert got.record.id == free.record.id

    # ── dependencies ─────────────────────────────────────────────────

    async def test_a_task_is_claimed_only_once_every_dependency_has_completed(
        self, store: Store
    ) -> None:
        first = await store.insert_task(make_task("first"))
        second = await store.insert_task(make_task("second"))
        waiting = make_task("waiting", priority=9)
        waiting.record.depends_on = [first.record.id, second.record.id]
        waiting = await store.insert_task(waiting)
        assert (await store.get_task(waiting.record.id)) == waiting
        got = await claim(store)
        assert got is not None
        assert got.record.id == first.record.id
        await store.transition_task(
            first.record.id, {TaskState.RUNNING}, TaskState.COMPLETED, now_ms=T0,
            result=make_result(),
        )  # fmt: skip
        got = await claim(store)
        assert got is not None
        assert got.record.id == second.record.id
        assert await claim(store) is None
        await store.transition_task(
            second.record.id, {TaskState.RUNNING}, TaskState.COMPLETED, now_ms=T0,
            result=make_result(),
        )  # fmt: skip
        got = await claim(store)
        assert got is not None
        assert got.record.id == waiting.record.id
        assert got.record.depends_on == [first.record.id, second.record.id]

    async def test_a_failed_dependency_blocks_unless_the_task_runs_anyway(
        self, store: Store
    ) -> None:
        failed = await store.insert_task(
            make_task(state=TaskState.FAILED, result=make_result(success=False))
        )
        blocked = make_task("blocked")
        blocked.record.depends_on = [failed.record.id]
        blocked = await store.insert_task(blocked)
        anyway = make_task("anyway")
        anyway.record.depends_on = [failed.record.id]
        anyway.record.on_dependency_failure = "run"
        anyway = await store.insert_task(anyway)
        got = await claim(store)
        assert got is not None
        assert got.record.id == anyway.record.id
        assert got.record.on_dependency_failure == "run"
        assert await claim(store) is None
        still = await store.get_task(blocked.record.id)
        assert still is not None
        assert still.record.state is TaskState.PENDING

    async def test_a_dependency_on_an_unknown_task_never_unblocks(self, store: Store) -> None:
        orphan = make_task("orphan")
        orphan.record.depends_on = [TaskId("task-gone")]
        orphan.record.on_dependency_failure = "run"
        await store.insert_task(orphan)
        assert await claim(store) is None

    async def test_dependent_tasks_are_the_pending_tasks_naming_a_dependency(
        self, store: Store
    ) -> None:
        base = await store.insert_task(make_task("base"))
        other = await store.insert_task(make_task("other"))
        ids = []
        for deps in ([base.record.id], [other.record.id, base.record.id], [other.record.id]):
            task = make_task("dependent")
            task.record.depends_on = list(deps)
            ids.append((await store.insert_task(task)).record.id)
        found = await store.dependent_tasks(base.record.id)
        assert [t.record.id for t in found] == ids[:2]
        await store.transition_task(ids[0], {TaskState.PENDING}, TaskState.CANCELLED, now_ms=T0)
        found = await store.dependent_tasks(base.record.id)
        assert [t.record.id for t in found] == ids[1:2]
        assert await store.dependent_tasks(TaskId("task-none")) == []

    async def test_a_plan_first_task_keeps_its_plan_state_and_can_be_aimed_at_its_slot(
        self, store: Store
    ) -> None:
        task = make_task("plan then do")
        task.record.plan_first = True
        await store.insert_task(task)
        got = await claim(store, "slot-a")
        assert got is not None
        assert (got.record.plan_first, got.record.plan_approved) == (True, False)
        await store.transition_task(
            task.record.id, {TaskState.RUNNING}, TaskState.PENDING_REVIEW, now_ms=T0,
            result=make_result(),
        )  # fmt: skip
        moved = await store.transition_task(
            task.record.id, {TaskState.PENDING_REVIEW}, TaskState.PENDING, now_ms=T0 + 1,
            prompt="carry it out", result=None, slot_id=None, attempt_reason="plan approved",
            plan_approved=True, target_slot=SlotId("slot-a"),
        )  # fmt: skip
        assert moved is not None
        assert (moved.plan_approved, moved.prompt) == (True, "carry it out")
        assert [a.reason for a in moved.attempts] == ["plan approved"]
        stored = await store.get_task(task.record.id)
        assert stored is not None
        assert stored.target.slot_id == "slot-a"
        assert stored.record.plan_approved
        assert await claim(store, "slot-b") is None
        again = await claim(store, "slot-a")
        assert again is not None
        assert again.record.plan_approved

    async def test_concurrent_claims_take_each_task_exactly_once(self, store: Store) -> None:
        tasks = [await store.insert_task(make_task(f"p{i}")) for i in range(200)]

        async def claimer(n: int) -> list[str]:
            got: list[str] = []
            while (task := await claim(store, f"slot-{n}", worker=f"w{n % 3}")) is not None:
                got.append(task.record.id)
            return got

        results = await asyncio.gather(*(claimer(n) for n in range(50)))
        claimed = Counter(task_id for ids in results for task_id in ids)
        assert set(claimed) == {t.record.id for t in tasks}
        assert set(claimed.values()) == {1}
        assert (await store.count_tasks()).get(TaskState.PENDING, 0) == 0

    # ── transitions ──────────────────────────────────────────────────

    async def test_transition_sets_state_fields_and_completed_stamp(self, store: Store) -> None:
        task = await store.insert_task(make_task())
        await claim(store, "slot-1", worker="w1", now=T0 + 5)
        result = make_result(cost=10, elapsed=20, turns=3, model="m")
        done = await store.transition_task(
            task.record.id, [TaskState.RUNNING], TaskState.COMPLETED, now_ms=T0 + 50,
            result=result,
        )  # fmt: skip
        assert done is not None
        assert done.state is TaskState.COMPLETED
        assert done.result == result
        assert done.started_at_ms == T0 + 5
        assert done.completed_at_ms == T0 + 50
        assert done.slot_id == "slot-1"
        stored = await store.get_task(task.record.id)
        assert stored is not None
        assert stored.record == done
        assert stored.claimed_by is None

    async def test_transition_from_a_wrong_state_changes_nothing(self, store: Store) -> None:
        task = await store.insert_task(make_task())
        before = await store.get_task(task.record.id)
        refused = await store.transition_task(
            task.record.id,
            [TaskState.RUNNING],
            TaskState.COMPLETED,
            now_ms=T0 + 1,
            result=make_result(cost=5),
            prompt="changed",
        )
        assert refused is None
        assert await store.get_task(task.record.id) == before
        refused = await store.transition_task(
            task.record.id, [], TaskState.CANCELLED, now_ms=T0 + 1
        )
        assert refused is None
        assert await store.get_task(task.record.id) == before

    async def test_transition_of_an_unknown_task_is_none(self, store: Store) -> None:
        got = await store.transition_task(
            TaskId("task-missing"), [TaskState.PENDING], TaskState.CANCELLED, now_ms=T0
        )
        assert got is None

    async def test_racing_transitions_end_in_exactly_one_terminal_state(self, store: Store) -> None:
        task = await store.insert_task(make_task())
        await claim(store)
        targets = [TaskState.COMPLETED, TaskState.CANCELLED, TaskState.FAILED] * 10
        outcomes = await asyncio.gather(
            *(
                store.transition_task(
                    task.record.id, [TaskState.RUNNING], to, now_ms=T0 + 1, result=make_result()
                )
                for to in targets
            )
        )
        winners = [o for o in outcomes if o is not None]
        assert len(winners) == 1
        stored = await store.get_task(task.record.id)
        assert stored is not None
        assert stored.record.state is winners[0].state

    async def test_unset_fields_are_left_alone_and_none_clears_them(self, store: Store) -> None:
        task = await store.insert_task(make_task("prompt"))
        await claim(store, "slot-1")
        review = await store.transition_task(
            task.record.id, [TaskState.RUNNING], TaskState.PENDING_REVIEW, now_ms=T0 + 20,
            result=make_result(cost=7, model="m"),
        )  # fmt: skip
        assert review is not None
        assert review.result is not None
        unchanged = await store.transition_task(
            task.record.id, [TaskState.PENDING_REVIEW], TaskState.PENDING_REVIEW, now_ms=T0 + 21,
            result=UNSET, slot_id=UNSET, prompt=UNSET, rejection_count=UNSET,
        )  # fmt: skip
        assert unchanged is not None
        assert unchanged.result == review.result
        assert unchanged.slot_id == "slot-1"
        assert unchanged.prompt == "prompt"
        requeued = await store.transition_task(
            task.record.id, [TaskState.PENDING_REVIEW], TaskState.PENDING, now_ms=T0 + 30,
            result=None, slot_id=None, prompt="prompt\n\nfeedback", rejection_count=1,
        )  # fmt: skip
        assert requeued is not None
        assert requeued.state is TaskState.PENDING
        assert requeued.result is None
        assert requeued.slot_id is None
        assert requeued.prompt == "prompt\n\nfeedback"
        assert requeued.rejection_count == 1
        assert requeued.started_at_ms is None
        assert requeued.completed_at_ms is None
        stored = await store.get_task(task.record.id)
        assert stored is not None
        assert stored.record == requeued

    async def test_a_requeued_task_can_be_claimed_again(self, store: Store) -> None:
        task = await store.insert_task(make_task())
        await claim(store)
        await store.transition_task(
            task.record.id, [TaskState.RUNNING], TaskState.PENDING, now_ms=T0 + 1, slot_id=None
        )
        again = await claim(store, "slot-b", worker="w2", now=T0 + 2)
        assert again is not None
        assert again.record.id == task.record.id
        assert again.claimed_by == "w2"
        assert again.record.started_at_ms == T0 + 2

    async def test_transition_to_running_stamps_start_and_keeps_the_claim(
        self, store: Store
    ) -> None:
        task = await store.insert_task(make_task())
        await claim(store, worker="w1", now=T0 + 1)
        again = await store.transition_task(
            task.record.id, [TaskState.RUNNING], TaskState.RUNNING, now_ms=T0 + 9
        )
        assert again is not None
        assert again.started_at_ms == T0 + 9
        stored = await store.get_task(task.record.id)
        assert stored is not None
        assert stored.claimed_by == "w1"

    async def test_cancelling_a_pending_task_means_it_is_never_claimed(self, store: Store) -> None:
        task = await store.insert_task(make_task())
        cancelled = await store.transition_task(
            task.record.id, [TaskState.PENDING], TaskState.CANCELLED, now_ms=T0 + 3
        )
        assert cancelled is not None
        assert cancelled.completed_at_ms == T0 + 3
        assert cancelled.started_at_ms is None
        assert await claim(store) is None

    async def test_pending_tasks_lists_pending_tasks_submitted_before_a_time(
        self, store: Store
    ) -> None:
        old = await store.insert_task(make_task(created_at_ms=T0 - 1000))
        older_running = await store.insert_task(make_task(created_at_ms=T0 - 2000, priority=9))
        await claim(store)
        boundary = await store.insert_task(make_task(created_at_ms=T0))
        newest = await store.insert_task(make_task(created_at_ms=T0 + 1000))
        got = await store.pending_tasks(T0)
        assert [t.record.id for t in got] == [old.record.id]
        assert older_running.record.id not in [t.record.id for t in got]
        got = await store.pending_tasks(T0 + 1)
        assert [t.record.id for t in got] == [old.record.id, boundary.record.id]
        every = await store.pending_tasks()
        assert [t.record.id for t in every] == [old.record.id, boundary.record.id, newest.record.id]

    # ── recovery and workers ─────────────────────────────────────────

    async def _running_for(self, store: Store, workers: list[str]) -> list[StoredTask]:
        for _ in workers:
            await store.insert_task(make_task())
        claimed = []
        for worker in workers:
            task = await claim(store, f"slot-{worker}", worker=worker)
            assert task is not None
            claimed.append(task)
        return claimed

    async def test_recover_requeue_puts_dead_workers_tasks_back_in_the_queue(
        self, store: Store
    ) -> None:
        dead1, dead2, alive = await self._running_for(store, ["dead", "dead", "alive"])
        recovered = await store.recover_tasks(["dead", "ghost"], "requeue", T0 + 100)
        assert sorted(recovered) == sorted([dead1.record.id, dead2.record.id])
        for task in (dead1, dead2):
            stored = await store.get_task(task.record.id)
            assert stored is not None
            assert stored.record.state is TaskState.PENDING
            assert stored.record.slot_id is None
            assert stored.record.started_at_ms is None
            assert stored.claimed_by is None
        kept = await store.get_task(alive.record.id)
        assert kept is not None
        assert kept.record.state is TaskState.RUNNING
        assert kept.claimed_by == "alive"
        again = await claim(store, "slot-new", worker="new")
        assert again is not None
        assert again.record.id == dead1.record.id

    async def test_recover_fail_ends_dead_workers_tasks_with_a_reason(self, store: Store) -> None:
        (dead,) = await self._running_for(store, ["dead"])
        recovered = await store.recover_tasks(["dead"], "fail", T0 + 100)
        assert recovered == [dead.record.id]
        stored = await store.get_task(dead.record.id)
        assert stored is not None
        record = stored.record
        assert record.state is TaskState.FAILED
        assert record.completed_at_ms == T0 + 100
        assert record.result is not None
        assert not record.result.success
        assert "dead" in record.result.output
        assert "heartbeat" in record.result.output
        assert stored.claimed_by is None
        assert await store.recover_tasks(["dead"], "fail", T0 + 200) == []

    async def test_recover_with_no_dead_workers_changes_nothing(self, store: Store) -> None:
        (task,) = await self._running_for(store, ["w"])
        assert await store.recover_tasks([], "requeue", T0) == []
        stored = await store.get_task(task.record.id)
        assert stored is not None
        assert stored.record.state is TaskState.RUNNING

    async def test_heartbeats_tell_live_workers_from_stale_task_owners(self, store: Store) -> None:
        await store.heartbeat_worker("fresh", T0 + 50)
        await store.heartbeat_worker("old", T0 - 50)
        await store.heartbeat_worker("idle", T0 - 50)
        await self._running_for(store, ["fresh", "old", "never-seen", "old"])
        assert await store.live_workers(T0) == ["fresh"]
        assert sorted(await store.live_workers(T0 - 50)) == ["fresh", "idle", "old"]
        assert sorted(await store.stale_task_owners(T0)) == ["never-seen", "old"]
        await store.heartbeat_worker("old", T0 + 60)
        assert await store.stale_task_owners(T0) == ["never-seen"]
        await store.remove_worker("fresh")
        assert sorted(await store.live_workers(T0)) == ["old"]
        assert sorted(await store.stale_task_owners(T0)) == ["fresh", "never-seen"]
        await store.remove_worker("nobody")

    async def test_workers_publish_and_clear_their_rate_limit_hold(self, store: Store) -> None:
        await store.heartbeat_worker("w1", T0)
        await store.heartbeat_worker("w2", T0)
        held = RateLimitState(until_ms=T0 + 500, status=429, slots={"s1": T0 + 500},
                              tasks=["t1"], workers=["w1"])  # fmt: skip
        await store.set_rate_limit("w1", held)
        await store.set_rate_limit("w2", held.model_copy(update={"status": 529}))
        await store.set_rate_limit("unregistered", held)  # ignored: not a known worker
        published = await store.rate_limits()
        assert sorted(published) == ["w1", "w2"]
        assert published["w1"] == held
        assert published["w2"].status == 529
        await store.set_rate_limit("w2", None)
        assert list(await store.rate_limits()) == ["w1"]
        await store.heartbeat_worker("w1", T0 + 100)  # a heartbeat keeps the hold
        assert list(await store.rate_limits()) == ["w1"]
        await store.remove_worker("w1")
        assert await store.rate_limits() == {}

    # ── slots ────────────────────────────────────────────────────────

    async def test_upsert_get_and_list_slots_by_worker(self, store: Store) -> None:
        config = SlotConfig(name="alice", role="reviewer", model="m", allowed_tools=["Read"])
        a = slot_record("slot-a", config=config, session_id="s1", worktree_path="/tmp/wt")
        b = slot_record("slot-b", state=SlotState.BUSY, current_task=TaskId("task-1"))
        c = slot_record("slot-c")
        await store.upsert_slot(a, "w1")
        await store.upsert_slot(b, "w2")
        await store.upsert_slot(c, "w1")
        assert await store.get_slot(SlotId("slot-a")) == a
        assert await store.get_slot(SlotId("slot-missing")) is None
        assert [s.id for s in await store.list_slots()] == ["slot-a", "slot-b", "slot-c"]
        assert [s.id for s in await store.list_slots("w1")] == ["slot-a", "slot-c"]
        assert await store.list_slots("w2") == [b]
        assert await store.list_slots("nobody") == []

        moved = a.model_copy(update={"state": SlotState.STOPPED, "restart_count": 2})
        await store.upsert_slot(moved, "w2")
        assert await store.get_slot(SlotId("slot-a")) == moved
        assert [s.id for s in await store.list_slots()] == ["slot-a", "slot-b", "slot-c"]
        assert [s.id for s in await store.list_slots("w2")] == ["slot-a", "slot-b"]

    async def test_the_runtime_mcp_config_path_is_not_stored(self, store: Store) -> None:
        await store.upsert_slot(slot_record("slot-a", mcp_config_path="/tmp/x.json"), "w")
        got = await store.get_slot(SlotId("slot-a"))
        assert got is not None
        assert got.mcp_config_path is None
        with pytest.raises(ValueError, match="mcp_config_path"):
            await store.update_slot(SlotId("slot-a"), mcp_config_path="/tmp/y.json")

    async def test_update_slot_sets_only_the_named_fields(self, store: Store) -> None:
        await store.upsert_slot(slot_record("slot-a", session_id="s1", cost_microdollars=5), "w")
        updated = await store.update_slot(
            SlotId("slot-a"), state=SlotState.BUSY, current_task=TaskId("task-1")
        )
        assert updated is not None
        assert updated.state is SlotState.BUSY
        assert updated.current_task == "task-1"
        assert updated.session_id == "s1"
        assert updated.cost_microdollars == 5
        assert await store.get_slot(SlotId("slot-a")) == updated

        config = SlotConfig(name="n", role="r")
        updated = await store.update_slot(
            SlotId("slot-a"), config=config, current_task=None, state="idle"
        )
        assert updated is not None
        assert updated.config == config
        assert updated.current_task is None
        assert updated.state is SlotState.IDLE
        same = await store.update_slot(SlotId("slot-a"))
        assert same == updated

    async def test_update_slot_of_a_missing_slot_is_none(self, store: Store) -> None:
        assert await store.update_slot(SlotId("slot-x"), state=SlotState.BUSY) is None

    async def test_update_slot_rejects_unknown_fields_and_bad_values(self, store: Store) -> None:
        await store.upsert_slot(slot_record("slot-a"), "w")
        with pytest.raises(ValueError, match="colour"):
            await store.update_slot(SlotId("slot-a"), colour="blue")
        with pytest.raises(ValueError, match="state"):
            await store.update_slot(SlotId("slot-a"), state="sleeping")
        with pytest.raises(ValueError, match="cannot set id"):
            await store.update_slot(SlotId("slot-a"), id="slot-b")
        got = await store.get_slot(SlotId("slot-a"))
        assert got == slot_record("slot-a")

    async def test_a_task_keeps_its_own_working_directory(self, store: Store) -> None:
        task = make_task()
        task.cwd = "/tmp/chain-worktree"
        await store.insert_task(task)
        claimed = await claim(store)
        assert claimed is not None
        assert claimed.cwd == "/tmp/chain-worktree"
        got = await store.get_task(task.record.id)
        assert got is not None
        assert got.cwd == "/tmp/chain-worktree"

    async def test_a_targeted_only_claim_skips_tasks_any_slot_may_run(self, store: Store) -> None:
        await store.insert_task(make_task("for anyone"))
        mine = await store.insert_task(make_task("for me", target=TaskTarget(SlotId("slot-a"))))
        reviews = await store.insert_task(make_task("reviews", target=TaskTarget(role="review")))
        assert await store.claim_task(SlotId("slot-b"), None, None, "w", T0,
                                      targeted_only=True) is None  # fmt: skip
        claimed = await store.claim_task(SlotId("slot-a"), None, None, "w", T0,
                                         targeted_only=True)  # fmt: skip
        assert claimed is not None
        assert claimed.record.id == mine.record.id
        by_role = await store.claim_task(SlotId("slot-c"), "review", None, "w", T0,
                                         targeted_only=True)  # fmt: skip
        assert by_role is not None
        assert by_role.record.id == reviews.record.id

    async def test_draining_up_to_an_id_leaves_later_messages_unread(self, store: Store) -> None:
        first = await store.send_message("coordinator", "slot-a", "one", T0)
        await store.send_message("coordinator", "slot-a", "two", T0 + 1)
        drained = await store.read_messages("slot-a", drain=True, up_to_id=first.id)
        assert [m.content for m in drained] == ["one"]
        assert [m.content for m in await store.read_messages("slot-a", drain=False)] == ["two"]

    async def test_a_slot_keeps_the_directory_its_session_was_recorded_in(
        self, store: Store
    ) -> None:
        await store.upsert_slot(slot_record("slot-a", session_id="s1", session_cwd="/a"), "w")
        got = await store.get_slot(SlotId("slot-a"))
        assert got is not None
        assert (got.session_id, got.session_cwd) == ("s1", "/a")
        await store.update_slot(SlotId("slot-a"), session_id="s2", session_cwd="/b")
        got = await store.get_slot(SlotId("slot-a"))
        assert got is not None
        assert (got.session_id, got.session_cwd) == ("s2", "/b")

    async def test_claim_marks_the_claiming_slot_busy_with_the_task(self, store: Store) -> None:
        await store.upsert_slot(slot_record("slot-a"), "w")
        task = await store.insert_task(make_task())
        await claim(store)
        slot = await store.get_slot(SlotId("slot-a"))
        assert slot is not None
        assert (slot.state, slot.current_task) == (SlotState.BUSY, task.record.id)

    async def test_settle_task_records_spend_slot_and_final_state_at_once(
        self, store: Store
    ) -> None:
        await store.upsert_slot(slot_record("slot-a", state=SlotState.BUSY), "w")
        task = await store.insert_task(make_task())
        await claim(store)
        result = make_result(cost=250, turns=2)
        settled = await store.settle_task(
            task.record.id, {TaskState.RUNNING}, TaskState.COMPLETED, now_ms=T0 + 50,
            result=result, slot_id=SlotId("slot-a"), spend=250, tasks_completed=1,
            slot_fields={"state": SlotState.IDLE, "current_task": None, "session_id": "s-1"},
        )  # fmt: skip
        assert settled is True
        got = await store.get_task(task.record.id)
        assert got is not None
        assert got.record.state is TaskState.COMPLETED
        assert got.record.result == result
        assert got.record.completed_at_ms == T0 + 50
        assert await store.get_spend() == 250
        slot = await store.get_slot(SlotId("slot-a"))
        assert slot is not None
        assert (slot.state, slot.session_id) == (SlotState.IDLE, "s-1")
        assert (slot.cost_microdollars, slot.tasks_completed) == (250, 1)

    async def test_settle_task_keeps_the_spend_when_the_task_already_ended(
        self, store: Store
    ) -> None:
        await store.upsert_slot(slot_record("slot-a"), "w")
        task = await store.insert_task(make_task())
        await claim(store)
        await store.transition_task(task.record.id, {TaskState.RUNNING}, TaskState.CANCELLED,
                                    now_ms=T0 + 20)  # fmt: skip
        settled = await store.settle_task(
            task.record.id, {TaskState.RUNNING}, TaskState.COMPLETED, now_ms=T0 + 50,
            result=make_result(cost=99), slot_id=SlotId("slot-a"), spend=99,
            tasks_completed=0, slot_fields={},
        )  # fmt: skip
        assert settled is False
        got = await store.get_task(task.record.id)
        assert got is not None
        assert got.record.state is TaskState.CANCELLED
        assert await store.get_spend() == 99
        slot = await store.get_slot(SlotId("slot-a"))
        assert slot is not None
        assert slot.cost_microdollars == 99

    async def test_settle_task_from_no_state_records_the_spend_and_leaves_the_task(
        self, store: Store
    ) -> None:
        """A run whose task the store gave to another run settles with no ``from_states``:
        its spend and slot are recorded, the task (running elsewhere) is left as it is."""
        await store.upsert_slot(slot_record("slot-a"), "w")
        task = await store.insert_task(make_task())
        await claim(store)
        settled = await store.settle_task(
            task.record.id, set(), TaskState.CANCELLED, now_ms=T0 + 50,
            result=make_result(cost=7), slot_id=SlotId("slot-a"), spend=7,
            tasks_completed=0, slot_fields={},
        )  # fmt: skip
        assert settled is False
        got = await store.get_task(task.record.id)
        assert got is not None
        assert got.record.state is TaskState.RUNNING
        assert await store.get_spend() == 7

    async def test_settle_task_with_requeue_queues_the_task_again_keeping_the_run(
        self, store: Store
    ) -> None:
        await store.upsert_slot(slot_record("slot-a", state=SlotState.BUSY), "w")
        task = await store.insert_task(make_task("make the tests pass"))
        await claim(store)
        check = VerificationRun(command="make test", exit_code=1, passed=False, output="1 failed")
        result = make_result(cost=300, turns=3).model_copy(update={"verifications": [check]})
        settled = await store.settle_task(
            task.record.id, {TaskState.RUNNING}, TaskState.PENDING, now_ms=T0 + 50,
            result=result, slot_id=SlotId("slot-a"), spend=300, tasks_completed=0,
            slot_fields={"state": SlotState.IDLE, "current_task": None},
            requeue=Requeue(reason="verification failed", prompt="fix it", rejection_count=1,
                            slot_id=SlotId("slot-a")),
        )  # fmt: skip
        assert settled is True
        got = await store.get_task(task.record.id)
        assert got is not None
        record = got.record
        assert (record.state, record.prompt, record.rejection_count) == (
            TaskState.PENDING, "fix it", 1,
        )  # fmt: skip
        assert (record.result, record.slot_id, record.started_at_ms) == (None, None, None)
        assert record.original_prompt == "make the tests pass"
        assert got.claimed_by is None
        [attempt] = record.attempts
        assert (attempt.reason, attempt.state) == ("verification failed", TaskState.FAILED)
        assert (attempt.cost_microdollars, attempt.turns_used) == (300, 3)
        assert attempt.verification == check
        assert await store.get_spend() == 300
        assert got.target.slot_id == "slot-a"
        assert await claim(store, "slot-b") is None
        again = await claim(store)
        assert again is not None
        assert again.record.id == task.record.id

    async def test_settle_task_with_requeue_leaves_a_task_that_already_ended(
        self, store: Store
    ) -> None:
        await store.upsert_slot(slot_record("slot-a"), "w")
        task = await store.insert_task(make_task())
        await claim(store)
        await store.transition_task(task.record.id, {TaskState.RUNNING}, TaskState.CANCELLED,
                                    now_ms=T0 + 20)  # fmt: skip
        settled = await store.settle_task(
            task.record.id, {TaskState.RUNNING}, TaskState.PENDING, now_ms=T0 + 50,
            result=make_result(cost=5), slot_id=SlotId("slot-a"), spend=5, tasks_completed=0,
            slot_fields={}, requeue=Requeue(reason="r", prompt="p", rejection_count=1),
        )  # fmt: skip
        assert settled is False
        got = await store.get_task(task.record.id)
        assert got is not None
        assert got.record.state is TaskState.CANCELLED
        assert got.record.attempts == []
        assert await store.get_spend() == 5

    async def test_add_slot_cost_increments_without_losing_concurrent_adds(
        self, store: Store
    ) -> None:
        await store.upsert_slot(slot_record("slot-a", cost_microdollars=10), "w")
        await asyncio.gather(*(store.add_slot_cost(SlotId("slot-a"), 3, 1) for _ in range(40)))
        await store.update_slot(SlotId("slot-a"), state=SlotState.BUSY)
        got = await store.get_slot(SlotId("slot-a"))
        assert got is not None
        assert got.cost_microdollars == 130
        assert got.tasks_completed == 40
        assert got.state is SlotState.BUSY
        await store.add_slot_cost(SlotId("slot-missing"), 5, 1)

    async def test_delete_slot_removes_it(self, store: Store) -> None:
        await store.upsert_slot(slot_record("slot-a"), "w")
        await store.upsert_slot(slot_record("slot-b"), "w")
        await store.delete_slot(SlotId("slot-a"))
        await store.delete_slot(SlotId("slot-missing"))
        assert await store.get_slot(SlotId("slot-a")) is None
        assert [s.id for s in await store.list_slots()] == ["slot-b"]

    # ── spend and context ────────────────────────────────────────────

    async def test_spend_starts_at_zero_and_concurrent_adds_are_all_counted(
        self, store: Store
    ) -> None:
        assert await store.get_spend() == 0
        totals = await asyncio.gather(*(store.add_spend(7) for _ in range(100)))
        assert await store.get_spend() == 700
        assert sorted(totals) == [7 * (i + 1) for i in range(100)]
        assert await store.add_spend(0) == 700

    async def test_a_task_queued_again_keeps_its_earlier_run_as_an_attempt(
        self, store: Store
    ) -> None:
        task = await store.insert_task(make_task())
        assert await claim(store) is not None
        first = make_result(cost=400, turns=2, model="m1")
        await store.transition_task(
            task.record.id, [TaskState.RUNNING], TaskState.PENDING_REVIEW, now_ms=T0 + 1,
            result=first,
        )  # fmt: skip
        again = await store.transition_task(
            task.record.id, [TaskState.PENDING_REVIEW], TaskState.PENDING, now_ms=T0 + 2,
            result=None, attempt_reason="rejected: shorter",
        )  # fmt: skip
        assert again is not None
        assert again.result is None
        (attempt,) = again.attempts
        assert (attempt.attempt, attempt.reason, attempt.state) == (
            1, "rejected: shorter", TaskState.PENDING_REVIEW,
        )  # fmt: skip
        assert (attempt.cost_microdollars, attempt.turns_used, attempt.model) == (400, 2, "m1")
        assert again.total_cost_microdollars == 400
        assert await claim(store) is not None
        await store.transition_task(
            task.record.id, [TaskState.RUNNING], TaskState.COMPLETED, now_ms=T0 + 3,
            result=make_result(cost=100),
        )  # fmt: skip
        stored = await store.get_task(task.record.id)
        assert stored is not None
        assert stored.record.total_cost_microdollars == 500
        assert [a.attempt for a in stored.record.attempts] == [1]
        metrics = await store.session_metrics(None, T0, T0 + 10)
        assert metrics.total_spend_microdollars == 500
        assert metrics.avg_cost_microdollars == 500

    async def test_a_recovered_task_keeps_the_interrupted_run_as_an_attempt(
        self, store: Store
    ) -> None:
        (task,) = await self._running_for(store, ["w-dead"])
        await store.recover_tasks(["w-dead"], "requeue", T0)
        stored = await store.get_task(task.record.id)
        assert stored is not None
        (attempt,) = stored.record.attempts
        assert attempt.state is TaskState.RUNNING
        assert "w-dead" in attempt.reason

    async def test_an_attempt_reason_on_a_refused_change_records_nothing(
        self, store: Store
    ) -> None:
        task = await store.insert_task(make_task())
        moved = await store.transition_task(
            task.record.id, [TaskState.FAILED], TaskState.PENDING, now_ms=T0,
            attempt_reason="never",
        )  # fmt: skip
        assert moved is None
        stored = await store.get_task(task.record.id)
        assert stored is not None
        assert stored.record.attempts == []

    async def test_budget_reservations_fit_the_limit_together_with_the_spend(
        self, store: Store
    ) -> None:
        assert await store.budget_state() == (0, 0)
        await store.add_spend(300)
        assert await store.reserve_budget(TaskId("task-a"), "w1", 400, 1000, T0)
        assert await store.reserve_budget(TaskId("task-b"), "w2", 300, 1000, T0)
        assert await store.budget_state() == (300, 700)
        assert not await store.reserve_budget(TaskId("task-c"), "w1", 1, 1000, T0)
        # A task's second reservation replaces its first.
        assert await store.reserve_budget(TaskId("task-a"), "w1", 300, 1000, T0)
        assert await store.budget_state() == (300, 600)
        await store.release_budget(TaskId("task-b"))
        await store.release_budget(TaskId("task-none"))
        assert await store.budget_state() == (300, 300)

    async def test_concurrent_reservations_never_pass_the_limit(self, store: Store) -> None:
        granted = await asyncio.gather(
            *(store.reserve_budget(TaskId(f"task-{i}"), "w", 100, 1000, T0) for i in range(25))
        )
        assert sum(granted) == 10
        assert await store.budget_state() == (0, 1000)

    async def test_settling_and_recovering_a_task_drop_its_reservation(self, store: Store) -> None:
        await store.upsert_slot(slot_record("slot-a"), "w1")
        await store.insert_task(make_task())
        running = await claim(store)
        assert running is not None
        assert await store.reserve_budget(running.record.id, "worker-1", 500, 1000, T0)
        await store.settle_task(
            running.record.id, {TaskState.RUNNING}, TaskState.COMPLETED, now_ms=T0,
            result=make_result(cost=120), slot_id=SlotId("slot-a"), spend=120,
            tasks_completed=1, slot_fields={"state": SlotState.IDLE, "current_task": None},
        )  # fmt: skip
        assert await store.budget_state() == (120, 0)
        (dead,) = await self._running_for(store, ["w-dead"])
        assert await store.reserve_budget(dead.record.id, "w-dead", 200, 1000, T0)
        assert await store.recover_tasks(["w-dead"], "requeue", T0) == [dead.record.id]
        assert await store.budget_state() == (120, 0)

    async def test_context_set_get_list_and_delete(self, store: Store) -> None:
        assert await store.context_get("k") is None
        assert await store.context_list() == {}
        await store.context_set("b", "2")
        await store.context_set("a", "1")
        await store.context_set("b", "two")
        assert await store.context_get("b") == "two"
        assert await store.context_list() == {"a": "1", "b": "two"}
        assert list(await store.context_list()) == ["a", "b"]
        assert await store.context_delete("a") is True
        assert await store.context_delete("a") is False
        assert await store.context_list() == {"b": "two"}
        await store.context_set("empty", "")
        assert await store.context_get("empty") == ""

    # ── messages ─────────────────────────────────────────────────────

    async def test_messages_are_peeked_then_drained_oldest_first(self, store: Store) -> None:
        m1 = await store.send_message("slot-a", "slot-b", "hello", T0 + 1)
        await store.send_message("slot-a", "slot-c", "not for b", T0 + 2)
        m3 = await store.send_message("slot-c", "slot-b", "again", T0 + 3)
        assert m1.id < m3.id
        assert (m1.from_slot, m1.to_slot, m1.content, m1.created_at_ms) == (
            "slot-a", "slot-b", "hello", T0 + 1,
        )  # fmt: skip
        assert await store.read_messages("slot-b", drain=False) == [m1, m3]
        assert await store.read_messages("slot-b", drain=False) == [m1, m3]
        assert await store.read_messages("slot-b", drain=True) == [m1, m3]
        assert await store.read_messages("slot-b", drain=True) == []
        assert await store.read_messages("slot-b", drain=False) == []
        m4 = await store.send_message("slot-a", "slot-b", "later", T0 + 4)
        assert await store.read_messages("slot-b", drain=True) == [m4]
        assert [m.content for m in await store.read_messages("slot-c", drain=False)] == [
            "not for b"
        ]

    async def test_concurrent_drains_never_deliver_a_message_twice(self, store: Store) -> None:
        sent = [await store.send_message("a", "b", f"m{i}", T0 + i) for i in range(100)]

        async def drain_some() -> list[int]:
            got: list[int] = []
            for _ in range(5):
                got.extend(m.id for m in await store.read_messages("b", drain=True))
            return got

        drained = await asyncio.gather(*(drain_some() for _ in range(10)))
        delivered = Counter(i for ids in drained for i in ids)
        assert set(delivered) == {m.id for m in sent}
        assert set(delivered.values()) == {1}

    # ── events ───────────────────────────────────────────────────────

    async def test_appended_events_get_growing_sequence_numbers_and_read_back_equal(
        self, store: Store
    ) -> None:
        first = TaskQueued(task_id="task-1", prompt="p", tags=["x"], at_ms=T0, worker_id="w1")
        second = TaskText(task_id="task-1", slot_id="slot-a", text="hi", at_ms=T0 + 1)
        third = SpendRecorded(microdollars=5, at_ms=T0 + 2, slot_id="slot-a", chain_id="c-1")
        await store.append_events([first, second])
        await store.append_events([third])
        assert 0 < first.seq < second.seq < third.seq
        assert await store.latest_event_seq() == third.seq
        events = await store.read_events()
        assert events == [first, second, third]
        assert events[0] is not first, "reads are private copies"

    async def test_reading_events_after_a_number_up_to_another_and_by_filter(
        self, store: Store
    ) -> None:
        events: list[Event] = [
            TaskQueued(task_id="task-1", at_ms=T0, worker_id="w1"),
            TaskText(task_id="task-1", slot_id="s", text="a", at_ms=T0, worker_id="w2"),
            TaskQueued(task_id="task-2", at_ms=T0, worker_id="w1", chain_id="chain-1"),
            ContextChanged(key="k", at_ms=T0, worker_id="w2"),
            TaskText(task_id="task-2", slot_id="s", text="b", at_ms=T0, chain_id="chain-1"),
        ]
        await store.append_events(events)
        seqs = [e.seq for e in events]

        async def read(**kwargs: Any) -> list[int]:
            return [e.seq for e in await store.read_events(**kwargs)]

        assert await read(after=seqs[1]) == seqs[2:]
        assert await read(after=seqs[0], up_to=seqs[2]) == seqs[1:3]
        assert await read(limit=2) == seqs[:2]
        assert await read(task_id="task-1") == seqs[:2]
        assert await read(chain_id="chain-1") == [seqs[2], seqs[4]]
        assert await read(types={"task_text"}) == [seqs[1], seqs[4]]
        assert await read(not_from="w1") == [seqs[1], seqs[3], seqs[4]]
        assert await read(after=seqs[4]) == []
        assert await read(task_id="task-none") == []

    async def test_an_empty_event_log_reads_as_nothing_with_latest_zero(self, store: Store) -> None:
        assert await store.latest_event_seq() == 0
        assert await store.read_events() == []

    async def test_an_event_of_an_unknown_type_reads_back_without_failing(
        self, store: Store
    ) -> None:
        # A newer claude-pool sharing the store may write types this one does not know.
        newer = UnknownEvent(type="task_teleported", task_id="task-1", at_ms=T0)
        await store.append_events([newer])
        (back,) = await store.read_events()
        assert isinstance(back, UnknownEvent)
        assert (back.type, back.task_id, back.seq) == ("task_teleported", "task-1", newer.seq)

    async def test_events_given_with_a_state_change_are_logged_with_it(self, store: Store) -> None:
        queued = TaskQueued(task_id="task-x", at_ms=T0)
        task = await store.insert_task(make_task(), events=[queued])
        assert queued.seq > 0
        cancelled = TaskCancelled(task_id=task.record.id, at_ms=T0 + 1)
        moved = await store.transition_task(
            task.record.id, [TaskState.PENDING], TaskState.CANCELLED, now_ms=T0 + 1,
            events=[cancelled],
        )  # fmt: skip
        assert moved is not None
        assert cancelled.seq > queued.seq
        spend = SpendRecorded(microdollars=3, at_ms=T0 + 2)
        await store.add_spend(3, events=[spend])
        note = ContextChanged(key="k", at_ms=T0 + 3)
        await store.context_set("k", "v", events=[note])
        sent = MessageSent(from_slot="a", to_slot="b", at_ms=T0 + 4)
        await store.send_message("a", "b", "hi", T0 + 4, events=[sent])
        types = [e.type for e in await store.read_events()]
        assert types == [
            "task_queued", "task_cancelled", "spend_recorded", "context_changed", "message_sent",
        ]  # fmt: skip

    async def test_events_of_a_state_change_that_did_not_happen_are_not_logged(
        self, store: Store
    ) -> None:
        task = await store.insert_task(make_task())
        assert await claim(store) is not None
        refused = TaskCancelled(task_id=task.record.id, at_ms=T0)
        moved = await store.transition_task(
            task.record.id, [TaskState.PENDING], TaskState.CANCELLED, now_ms=T0, events=[refused]
        )
        assert moved is None
        assert refused.seq == 0
        missing = ContextChanged(key="none", deleted=True, at_ms=T0)
        assert await store.context_delete("none", events=[missing]) is False
        assert await store.read_events() == []

    async def test_settling_a_task_logs_its_events_with_the_spend(self, store: Store) -> None:
        await store.upsert_slot(slot_record("slot-a"), "w1")
        await store.insert_task(make_task())
        running = await claim(store)
        assert running is not None
        events: list[Event] = [
            TaskFinished(
                task_id=running.record.id, slot_id="slot-a", state=TaskState.COMPLETED,
                success=True, cost_microdollars=7, at_ms=T0,
            ),
            SpendRecorded(task_id=running.record.id, slot_id="slot-a", microdollars=7, at_ms=T0),
        ]  # fmt: skip
        moved = await store.settle_task(
            running.record.id, {TaskState.RUNNING}, TaskState.COMPLETED, now_ms=T0,
            result=make_result(cost=7), slot_id=SlotId("slot-a"), spend=7, tasks_completed=1,
            slot_fields={"state": SlotState.IDLE, "current_task": None}, events=events,
        )  # fmt: skip
        assert moved
        assert [e.type for e in await store.read_events()] == ["task_finished", "spend_recorded"]
        assert all(e.seq > 0 for e in events)

    async def test_recovery_logs_the_events_it_is_given_for_each_task(self, store: Store) -> None:
        (task,) = await self._running_for(store, ["w-dead"])

        def events(task_id: TaskId, worker: str, record: TaskRecord) -> list[Event]:
            return [
                TaskRequeued(task_id=task_id, reason=f"{worker} died, now {record.state}"),
                WorkerLost(lost_worker=worker, tasks=[task_id]),
            ]

        recovered = await store.recover_tasks(["w-dead"], "requeue", T0, events=events)
        assert recovered == [task.record.id]
        logged = await store.read_events()
        assert [e.type for e in logged] == ["task_requeued", "worker_lost"]
        assert isinstance(logged[0], TaskRequeued)
        assert logged[0].reason == "w-dead died, now pending"

    async def test_pruning_drops_old_events_but_never_the_newest(self, store: Store) -> None:
        old = [TaskText(task_id="t", slot_id="s", text=str(i), at_ms=T0 + i) for i in range(3)]
        await store.append_events(old)
        assert await store.prune_events(T0 + 2) == 2
        assert [e.seq for e in await store.read_events()] == [old[2].seq]
        assert await store.prune_events(T0 + 100) == 0, "the newest event stays"
        assert await store.latest_event_seq() == old[2].seq
        later = TaskText(task_id="t", slot_id="s", text="later", at_ms=T0 + 200)
        await store.append_events([later])
        assert later.seq > old[2].seq, "numbers never go back"

    async def test_a_waiter_wakes_when_an_event_is_appended(self, store: Store) -> None:
        latest = await store.latest_event_seq()
        waiter = asyncio.ensure_future(store.wakeups().wait(latest, timeout=10))
        await asyncio.sleep(0)
        event = ContextChanged(key="k", at_ms=T0)
        await store.append_events([event])
        async with asyncio.timeout(10):
            assert await waiter == event.seq

    async def test_a_waiter_returns_at_once_when_events_are_past_its_number(
        self, store: Store
    ) -> None:
        event = ContextChanged(key="k", at_ms=T0)
        await store.append_events([event])
        assert await store.wakeups().wait(0, timeout=10) == event.seq

    async def test_a_waiter_returns_the_latest_number_when_nothing_comes(
        self, store: Store
    ) -> None:
        event = ContextChanged(key="k", at_ms=T0)
        await store.append_events([event])
        assert await store.wakeups().wait(event.seq, timeout=0.05) == event.seq

    # ── chains ───────────────────────────────────────────────────────

    async def test_a_chain_document_reads_back_as_written_and_upsert_replaces_it(
        self, store: Store
    ) -> None:
        assert await store.get_chain("chain-1") is None
        doc: dict[str, Any] = {"id": "chain-1", "steps": [{"name": "a", "cost": 5}], "n": None}
        await store.upsert_chain("chain-1", doc, "running", T0)
        assert await store.get_chain("chain-1") == doc
        doc["steps"].append({"name": "b"})  # the store kept its own copy
        assert await store.get_chain("chain-1") == {
            "id": "chain-1",
            "steps": [{"name": "a", "cost": 5}],
            "n": None,
        }
        await store.upsert_chain("chain-1", {"id": "chain-1", "done": True}, "completed", T0 + 1)
        assert await store.get_chain("chain-1") == {"id": "chain-1", "done": True}
        read = await store.get_chain("chain-1")
        assert read is not None
        read["done"] = False
        assert await store.get_chain("chain-1") == {"id": "chain-1", "done": True}

    async def test_chains_list_in_creation_order_by_their_last_state(self, store: Store) -> None:
        for i, state in enumerate(["running", "completed", "running", "failed"]):
            await store.upsert_chain(f"chain-{i}", {"id": f"chain-{i}"}, state, T0 + i)
        # An update keeps the chain's place and changes the state it is listed under.
        await store.upsert_chain("chain-0", {"id": "chain-0", "v": 2}, "completed", T0 + 10)
        ids = [c["id"] for c in await store.list_chains()]
        assert ids == ["chain-0", "chain-1", "chain-2", "chain-3"]
        assert [c["id"] for c in await store.list_chains("running")] == ["chain-2"]
        assert [c["id"] for c in await store.list_chains("completed")] == ["chain-0", "chain-1"]
        assert (await store.list_chains("completed"))[0] == {"id": "chain-0", "v": 2}
        assert [c["id"] for c in await store.list_chains(limit=2, offset=1)] == [
            "chain-1",
            "chain-2",
        ]
        assert await store.list_chains("cancelled") == []
        with pytest.raises(ValueError, match="negative"):
            await store.list_chains(limit=-1)

    async def test_claim_chain_takes_a_chain_over_only_from_the_expected_owner(
        self, store: Store
    ) -> None:
        assert not await store.claim_chain("chain-missing", None, "w1", T0)
        doc: dict[str, Any] = {"id": "chain-1", "owner": "dead", "steps": [{"n": 1}]}
        await store.upsert_chain("chain-1", doc, "running", T0)
        assert not await store.claim_chain("chain-1", "someone-else", "w1", T0 + 1)
        assert not await store.claim_chain("chain-1", None, "w1", T0 + 1)
        assert await store.get_chain("chain-1") == doc
        assert await store.claim_chain("chain-1", "dead", "w1", T0 + 1)
        assert await store.get_chain("chain-1") == {**doc, "owner": "w1"}
        # A second takeover from the same (stale) owner fails: the chain is w1's now.
        assert not await store.claim_chain("chain-1", "dead", "w2", T0 + 2)
        assert [c["owner"] for c in await store.list_chains("running")] == ["w1"]
        # A chain with no owner at all (no key, or null) is claimed from None.
        await store.upsert_chain("chain-2", {"id": "chain-2"}, "pending", T0 + 3)
        await store.upsert_chain("chain-3", {"id": "chain-3", "owner": None}, "pending", T0 + 4)
        assert await store.claim_chain("chain-2", None, "w2", T0 + 5)
        assert await store.claim_chain("chain-3", None, "w2", T0 + 5)
        assert [c["owner"] for c in await store.list_chains("pending")] == ["w2", "w2"]

    async def test_a_save_expecting_an_owner_is_refused_once_the_chain_was_taken_over(
        self, store: Store
    ) -> None:
        doc: dict[str, Any] = {"id": "chain-1", "owner": "w1", "step": 1}
        assert await store.upsert_chain("chain-1", doc, "running", T0)
        assert await store.upsert_chain(
            "chain-1", {**doc, "step": 2}, "running", T0 + 1, expected_owner="w1"
        )
        assert await store.get_chain("chain-1") == {**doc, "step": 2}
        assert await store.claim_chain("chain-1", "w1", "w2", T0 + 2)
        # w1 still runs it and saves its progress: refused, w2's document stays as it is.
        assert not await store.upsert_chain(
            "chain-1", {**doc, "step": 3}, "completed", T0 + 3, expected_owner="w1"
        )
        assert await store.get_chain("chain-1") == {**doc, "step": 2, "owner": "w2"}
        assert [c["id"] for c in await store.list_chains("running")] == ["chain-1"]
        assert await store.list_chains("completed") == []
        # The new owner's saves go through; an unknown chain is not created by one.
        new = {**doc, "owner": "w2", "step": 3}
        assert await store.upsert_chain("chain-1", new, "running", T0 + 4, expected_owner="w2")
        assert await store.get_chain("chain-1") == new
        assert not await store.upsert_chain(
            "chain-9", {"id": "chain-9", "owner": "w1"}, "running", T0 + 5, expected_owner="w1"
        )
        assert await store.get_chain("chain-9") is None

    async def test_concurrent_conditional_saves_and_a_takeover_leave_the_new_owners_document(
        self, store: Store
    ) -> None:
        await store.upsert_chain("chain-1", {"id": "chain-1", "owner": "w1"}, "running", T0)
        claim = store.claim_chain("chain-1", "w1", "w2", T0 + 1)
        saves = [
            store.upsert_chain(
                "chain-1",
                {"id": "chain-1", "owner": "w1", "n": i},
                "running",
                T0 + 1,
                expected_owner="w1",
            )
            for i in range(5)
        ]
        outcome = await asyncio.gather(claim, *saves)
        assert outcome[0] is True
        chain = await store.get_chain("chain-1")
        assert chain is not None
        assert chain["owner"] == "w2"
        assert (
            await store.upsert_chain(
                "chain-1",
                {"id": "chain-1", "owner": "w1", "n": 9},
                "running",
                T0 + 2,
                expected_owner="w1",
            )
            is False
        )
        assert await store.get_chain("chain-1") == chain

    async def test_concurrent_takeovers_of_one_orphaned_chain_have_exactly_one_winner(
        self, store: Store
    ) -> None:
        await store.upsert_chain("chain-1", {"id": "chain-1", "owner": "dead"}, "running", T0)
        wins = await asyncio.gather(
            *(store.claim_chain("chain-1", "dead", f"w{i}", T0 + 1) for i in range(10))
        )
        assert wins.count(True) == 1
        chain = await store.get_chain("chain-1")
        assert chain is not None
        assert chain["owner"] == f"w{wins.index(True)}"

    # ── metrics ──────────────────────────────────────────────────────

    async def _metrics_fixture(self, store: Store) -> None:
        """Nine tasks; the expected figures in the tests below are computed by hand."""

        async def add(state: TaskState, result: TaskResult | None, created: int,
                      tags: list[str] | None = None) -> None:  # fmt: skip
            await store.insert_task(make_task(state=state, result=result, created_at_ms=created,
                                              tags=tags))  # fmt: skip

        done = TaskState.COMPLETED
        await add(done, make_result(100, 1000, 2, "A"), T0 + 1000, ["x"])
        await add(done, make_result(300, 3000, 4, "A"), T0 + 2000)
        await add(done, make_result(50, 2001, 1, "B"), T0 + 3000, ["y"])
        await add(done, make_result(51, 4001, 2, "B"), T0 + 4000, ["x", "y"])
        await add(TaskState.FAILED, make_result(70, 500, 1, "A", False), T0 + 5000)
        await add(TaskState.CANCELLED, make_result(20, 100, 0, None, False), T0 + 6000)
        await add(TaskState.RUNNING, None, T0 + 7000)
        await add(TaskState.PENDING, None, T0 + 8000, ["x"])
        await add(TaskState.PENDING_REVIEW, make_result(10, 300, 1, "B"), T0 + 9000)

    async def test_session_metrics_over_all_tasks(self, store: Store) -> None:
        await self._metrics_fixture(store)
        m = await store.session_metrics(None, T0, T0 + 60_000)
        assert (m.total_tasks, m.completed_tasks, m.failed_tasks) == (9, 4, 1)
        assert (m.cancelled_tasks, m.running_tasks, m.pending_tasks) == (1, 1, 1)
        assert m.total_spend_microdollars == 100 + 300 + 50 + 51 + 70 + 20 + 10
        assert m.avg_cost_microdollars == 125  # 501 // 4
        assert m.max_cost_microdollars == 300
        assert m.avg_elapsed_ms == 2500  # 10002 // 4
        assert m.median_elapsed_ms == 2500  # (2001 + 3000) // 2
        assert (m.min_elapsed_ms, m.max_elapsed_ms) == (1000, 4001)
        assert m.avg_turns == pytest.approx(2.25)  # 9 / 4
        assert m.tasks_by_model == {"A": 3, "B": 3}
        assert m.model_breakdown == [
            ModelMetrics(model="A", task_count=3, total_cost_microdollars=470,
                         avg_cost_microdollars=156, avg_elapsed_ms=1500, total_turns=7),
            ModelMetrics(model="B", task_count=3, total_cost_microdollars=111,
                         avg_cost_microdollars=37, avg_elapsed_ms=2100, total_turns=4),
        ]  # fmt: skip
        assert (m.session_start_ms, m.session_duration_ms) == (T0, 60_000)

    async def test_session_metrics_of_an_empty_store_are_zero(self, store: Store) -> None:
        m = await store.session_metrics(None, T0, T0 - 5)
        assert m.model_dump() == {
            **type(m)().model_dump(),
            "session_start_ms": T0,
            "session_duration_ms": 0,
        }

    async def test_session_metrics_filter_by_creation_time(self, store: Store) -> None:
        await self._metrics_fixture(store)
        # since is inclusive, until exclusive: tasks 2, 3 and 4 (created 2000..4000).
        m = await store.session_metrics(
            MetricsFilter(since_ms=T0 + 2000, until_ms=T0 + 5000), T0, T0
        )
        assert (m.total_tasks, m.completed_tasks, m.failed_tasks) == (3, 3, 0)
        assert m.total_spend_microdollars == 401
        assert m.avg_cost_microdollars == 133
        assert m.median_elapsed_ms == 3000
        assert (m.min_elapsed_ms, m.max_elapsed_ms, m.avg_elapsed_ms) == (2001, 4001, 3000)
        assert m.avg_turns == pytest.approx(7 / 3)
        assert m.tasks_by_model == {"A": 1, "B": 2}

    async def test_session_metrics_filter_by_any_tag(self, store: Store) -> None:
        await self._metrics_fixture(store)
        m = await store.session_metrics(MetricsFilter(tags=["x"]), T0, T0)
        # tasks 1, 4 and 8 (task 4 has both tags but counts once)
        assert (m.total_tasks, m.completed_tasks, m.pending_tasks) == (3, 2, 1)
        assert m.total_spend_microdollars == 151
        assert m.median_elapsed_ms == 2500  # (1000 + 4001) // 2
        m = await store.session_metrics(MetricsFilter(tags=["x", "y"]), T0, T0)
        assert m.total_tasks == 4
        assert m.total_spend_microdollars == 201

    async def test_session_metrics_filter_by_model(self, store: Store) -> None:
        await self._metrics_fixture(store)
        m = await store.session_metrics(MetricsFilter(model="B"), T0, T0)
        # tasks 3, 4 (completed) and 9 (pending review)
        assert m.total_tasks == 3
        assert (m.completed_tasks, m.running_tasks, m.pending_tasks) == (2, 0, 0)
        assert m.total_spend_microdollars == 111
        assert m.avg_cost_microdollars == 50  # 101 // 2
        assert m.median_elapsed_ms == 3001  # (2001 + 4001) // 2
        assert m.tasks_by_model == {"B": 3}
        assert [b.model for b in m.model_breakdown] == ["B"]
        m = await store.session_metrics(MetricsFilter(model="none-such"), T0, T0)
        assert m.total_tasks == 0

    async def test_session_metrics_median_of_an_odd_count_is_the_middle_value(
        self, store: Store
    ) -> None:
        for elapsed in (9, 1, 5, 7, 3):
            result = make_result(elapsed=elapsed, model="m")
            await store.insert_task(make_task(state=TaskState.COMPLETED, result=result))
        m = await store.session_metrics(None, T0, T0)
        assert (m.median_elapsed_ms, m.avg_elapsed_ms) == (5, 5)

    # ── webhooks and their outbox ────────────────────────────────────

    async def test_a_logged_event_adds_a_delivery_for_each_webhook_that_wants_it(
        self, store: Store
    ) -> None:
        await store.put_webhook(Webhook(id="all", url="http://a/", created_at_ms=T0))
        await store.put_webhook(
            Webhook(id="done", url="http://b/", events=["task_finished"], secret="s",
                    created_at_ms=T0 + 1)
        )  # fmt: skip
        hooks = await store.list_webhooks()
        assert [(h.id, h.events, h.secret) for h in hooks] == [
            ("all", ["*"], None),
            ("done", ["task_finished"], "s"),
        ]
        queued = TaskQueued(task_id="t1", prompt="p", at_ms=T0)
        await store.insert_task(make_task(task_id="t1"), events=[queued])
        finished = TaskFinished(task_id="t1", state=TaskState.COMPLETED, success=True, at_ms=T0 + 5)
        await store.append_events([finished, ContextChanged(key="k", at_ms=T0 + 6)])
        deliveries = await store.list_deliveries()
        assert sorted((d.seq, d.webhook_id, d.event_type) for d in deliveries) == [
            (queued.seq, "all", "task_queued"),
            (finished.seq, "all", "task_finished"),
            (finished.seq, "done", "task_finished"),
            (finished.seq + 1, "all", "context_changed"),
        ]
        assert [d.id for d in deliveries] == sorted((d.id for d in deliveries), reverse=True)
        assert {d.seq for d in deliveries} == {queued.seq, finished.seq, finished.seq + 1}
        assert all(d.state is DeliveryState.PENDING and d.attempts == 0 for d in deliveries)
        assert all(d.payload == "" for d in deliveries)  # lists leave the body out
        only_done = await store.list_deliveries(webhook_id="done")
        assert [d.seq for d in only_done] == [finished.seq]

    async def test_claimed_deliveries_carry_the_event_and_are_leased(self, store: Store) -> None:
        await store.put_webhook(Webhook(id="h", url="http://a/", created_at_ms=T0))
        await store.append_events([ContextChanged(key="k1", at_ms=T0)])
        await store.append_events([ContextChanged(key="k2", at_ms=T0 + 1)])
        assert await store.next_delivery_due_ms() == T0
        claimed = await store.claim_deliveries(T0 + 10, lease_ms=1000, limit=1)
        assert len(claimed) == 1
        event = parse_event(claimed[0].payload)
        assert isinstance(event, ContextChanged)
        assert event.key == "k1"
        rest = await store.claim_deliveries(T0 + 10, lease_ms=1000)
        assert [parse_event(d.payload).type for d in rest] == ["context_changed"]
        assert rest[0].seq > claimed[0].seq
        # Leased: nobody else gets them until the lease ends, then they are due again.
        assert await store.claim_deliveries(T0 + 500, lease_ms=1000) == []
        again = await store.claim_deliveries(T0 + 1010, lease_ms=1000)
        assert {d.id for d in again} == {claimed[0].id, rest[0].id}

    async def test_finishing_a_delivery_records_the_attempt_and_its_outcome(
        self, store: Store
    ) -> None:
        await store.put_webhook(Webhook(id="h", url="http://a/", created_at_ms=T0))
        await store.append_events([ContextChanged(key=f"k{i}", at_ms=T0) for i in range(3)])
        first, second, third = await store.claim_deliveries(T0, lease_ms=1000)
        await store.finish_delivery(
            first.id, delivered=True, status=204, error=None, now_ms=T0 + 1, retry_at_ms=None
        )
        await store.finish_delivery(
            second.id, delivered=False, status=500, error="HTTP 500", now_ms=T0 + 1,
            retry_at_ms=T0 + 2000,
        )  # fmt: skip
        await store.finish_delivery(
            third.id, delivered=False, status=None, error="refused", now_ms=T0 + 1,
            retry_at_ms=None,
        )  # fmt: skip
        by_id = {d.id: d for d in await store.list_deliveries()}
        assert by_id[first.id].state is DeliveryState.DELIVERED
        assert by_id[first.id].delivered_at_ms == T0 + 1
        assert (by_id[second.id].state, by_id[second.id].attempts) == (DeliveryState.PENDING, 1)
        assert by_id[second.id].last_status == 500
        assert by_id[second.id].next_attempt_ms == T0 + 2000
        assert (by_id[third.id].state, by_id[third.id].last_error) == (
            DeliveryState.FAILED,
            "refused",
        )
        assert await store.next_delivery_due_ms() == T0 + 2000
        assert await store.claim_deliveries(T0 + 1999, lease_ms=1000) == []
        assert [d.id for d in await store.claim_deliveries(T0 + 2000, lease_ms=1000)] == [second.id]
        failed = await store.list_deliveries(state=DeliveryState.FAILED)
        assert [d.id for d in failed] == [third.id]

    async def test_a_deleted_webhook_takes_its_pending_deliveries_along(self, store: Store) -> None:
        await store.put_webhook(Webhook(id="h", url="http://a/", created_at_ms=T0))
        await store.append_events([ContextChanged(key="k", at_ms=T0)])
        assert await store.delete_webhook("h")
        assert not await store.delete_webhook("h")
        assert await store.list_webhooks() == []
        assert await store.list_deliveries() == []
        await store.append_events([ContextChanged(key="k2", at_ms=T0)])
        assert await store.next_delivery_due_ms() is None

    async def test_pruning_keeps_pending_deliveries_and_recent_ones(self, store: Store) -> None:
        await store.put_webhook(Webhook(id="h", url="http://a/", created_at_ms=T0))
        await store.append_events([ContextChanged(key=f"k{i}", at_ms=T0 + i) for i in range(3)])
        done, failed, pending = await store.claim_deliveries(T0 + 10, lease_ms=1000)
        await store.finish_delivery(
            done.id, delivered=True, status=200, error=None, now_ms=T0 + 10, retry_at_ms=None
        )
        await store.finish_delivery(
            failed.id, delivered=False, status=500, error="x", now_ms=T0 + 10, retry_at_ms=None
        )
        assert await store.prune_deliveries(T0 + 1) == 1  # only the delivered one is older
        assert await store.prune_deliveries(T0 + 100) == 1
        assert [d.id for d in await store.list_deliveries()] == [pending.id]

    async def test_put_webhook_replaces_the_one_with_its_id(self, store: Store) -> None:
        await store.put_webhook(Webhook(id="h", url="http://a/", created_at_ms=T0))
        await store.put_webhook(
            Webhook(id="h", url="http://b/", events=["task_queued"], created_at_ms=T0)
        )
        [hook] = await store.list_webhooks()
        assert (hook.url, hook.events) == ("http://b/", ["task_queued"])
        await store.append_events([ContextChanged(key="k", at_ms=T0)])
        assert await store.list_deliveries() == []
