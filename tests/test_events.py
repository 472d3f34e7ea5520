"""The engine's event seam: typed domain events, one bus, the event log, no polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest

from claude_pool import Pool, PoolConfig, TaskState
from claude_pool.bus import EventBus, Lagged
from claude_pool.eventlog import EventLog
from claude_pool.events import (
    EVENT_CLASSES,
    Event,
    TaskFinished,
    TaskQueued,
    TaskRequeued,
    TaskText,
    UnknownEvent,
    describe,
    parse_event,
)
from claude_pool.executor.base import EventKind, ExecutionRequest
from claude_pool.store import MemoryStore, Store
from claude_pool.testing.counting_store import CountingStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.types import SlotId, TaskResult, now_ms
from engine_stores import new_store

pytestmark = pytest.mark.usefixtures("engine_store")
"""Each test runs on the memory store and on PostgreSQL (tests/engine_stores.py)."""


def make_pool(
    executor: FakeExecutor | None = None, *, slots: int = 1, store: Store | None = None, **kw: Any
) -> Pool:
    return Pool(
        PoolConfig(), slots=slots, store=store or new_store(),
        executor=executor or FakeExecutor(), **kw,
    )  # fmt: skip


async def collect(stream: AsyncIterator[Event], count: int, timeout: float = 5) -> list[Event]:
    got: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in stream:
            got.append(event)
            if len(got) == count:
                break
    return got


# ── the events themselves ────────────────────────────────────────────


def sample_events() -> list[Event]:
    """One event of every type, with only the fields it needs."""
    values = {
        "task_id": "task-1", "slot_id": "slot-1", "chain_id": "chain-1", "text": "hello",
        "tool": "Bash", "turn": 2, "state": "completed", "success": True, "requeued": True,
        "attempt": 2, "max_attempts": 3, "reason": "why", "restart_count": 1,
        "microdollars": 12, "until_ms": 5, "step": "plan", "index": 0, "path": "/tmp/x",
        "key": "goal", "from_slot": "a", "to_slot": "b", "lost_worker": "w",
        "command": "make test", "passed": True,
    }  # fmt: skip
    events = []
    for cls in EVENT_CLASSES.values():
        needed = {
            name: values[name]
            for name, field in cls.model_fields.items()
            if field.is_required() or name in ("task_id", "slot_id", "chain_id")
        }
        events.append(cls.model_validate(needed))
    return events


def test_every_event_type_round_trips_through_json() -> None:
    for event in sample_events():
        event.seq = 7
        back = parse_event(event.model_dump_json())
        assert type(back) is type(event)
        assert back == event


def test_an_event_of_an_unknown_type_parses_as_unknown() -> None:
    back = parse_event('{"type": "task_teleported", "task_id": "t", "seq": 3, "extra": 1}')
    assert isinstance(back, UnknownEvent)
    assert (back.type, back.task_id, back.seq) == ("task_teleported", "t", 3)
    assert describe(back) == "task_teleported t"


def test_describe_renders_every_event_type_as_one_line() -> None:
    lines = [describe(event) for event in sample_events()]
    assert all(line and "\n" not in line for line in lines)
    assert len(set(lines)) == len(lines), "each type says something of its own"


def test_describe_can_leave_out_the_task_it_is_about() -> None:
    event = TaskText(task_id="task-9", slot_id="s", text="reading  the\nfiles")
    assert describe(event) == "task-9: reading the files"
    assert describe(event, subject=False) == "reading the files"


# ── the bus ──────────────────────────────────────────────────────────


async def test_a_slow_subscriber_is_told_which_events_it_missed() -> None:
    bus = EventBus()
    subscription = bus.subscribe(maxsize=2)
    for seq in range(1, 6):
        bus.publish(TaskText(task_id="t", slot_id="s", text=str(seq), seq=seq))
    items = [await subscription.get(timeout=1) for _ in range(3)]
    assert [getattr(i, "seq", None) for i in items[:2]] == [1, 2]
    assert items[2] == Lagged(first_seq=3, last_seq=5, count=3)
    bus.publish(TaskText(task_id="t", slot_id="s", text="6", seq=6))
    after = await subscription.get(timeout=1)
    assert isinstance(after, Event)
    assert after.seq == 6
    assert subscription.missed == 3


async def test_a_failing_listener_does_not_stop_the_others() -> None:
    bus = EventBus()
    seen: list[int] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.add_listener(broken)
    bus.add_listener(lambda e: seen.append(e.seq))
    bus.publish(TaskText(task_id="t", slot_id="s", text="x", seq=1))
    assert seen == [1]


async def test_a_closed_subscription_ends_its_iteration() -> None:
    bus = EventBus()
    subscription = bus.subscribe()
    event = TaskText(task_id="t", slot_id="s", text="x", seq=1)
    bus.publish(event)
    subscription.close()
    assert [item async for item in subscription] == [event]
    assert bus.subscriber_count == 0


# ── the engine publishes ─────────────────────────────────────────────


async def test_a_subscriber_sees_the_events_of_a_task_in_order() -> None:
    executor = FakeExecutor(
        events=lambda r: [
            (EventKind.ASSISTANT_TEXT, {"text": "looking"}),
            (EventKind.TOOL_USE, {"name": "Read", "input": {"file_path": "a.py"}}),
        ]
    )
    async with make_pool(executor) as pool:
        subscription = pool.subscribe(lambda e: e.task_id is not None)
        task_id = await pool.submit("hello")
        await pool.wait(task_id, timeout=5)
        events = []
        while (item := subscription.get_nowait()) is not None or len(events) < 6:
            if item is None:
                item = await subscription.get(timeout=5)
            assert isinstance(item, Event)
            events.append(item)
            if isinstance(item, TaskFinished):
                break
    types = [e.type for e in events if e.task_id == task_id]
    assert types == [
        "task_queued", "task_claimed", "task_started", "task_text", "task_tool_use",
        "spend_recorded", "task_finished",
    ]  # fmt: skip
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), "in order, each once"
    assert all(e.worker_id == pool.worker_id for e in events)
    finished = events[-1]
    assert isinstance(finished, TaskFinished)
    assert (finished.state, finished.success, finished.cost_microdollars) == (
        TaskState.COMPLETED, True, 1000,
    )  # fmt: skip


async def test_a_slow_subscriber_does_not_slow_dispatch_and_learns_what_it_missed() -> None:
    async with make_pool(slots=2) as pool:
        slow = pool.subscribe(maxsize=5)  # never read while the batch runs
        ids = [await pool.submit(f"task {i}") for i in range(100)]
        for task_id in ids:
            assert (await pool.wait(task_id, timeout=10)).state is TaskState.COMPLETED
        items = [slow.get_nowait() for _ in range(6)]
    assert all(isinstance(i, Event) for i in items[:5])
    notice = items[5]
    assert isinstance(notice, Lagged)
    assert notice.count >= 100 * 4, "100 tasks publish several events each"
    assert 0 < notice.first_seq < notice.last_seq


async def test_a_consumer_resumes_after_sequence_n_without_missing_or_repeating() -> None:
    async with make_pool() as pool:
        first = await pool.submit("one")
        await pool.wait(first, timeout=5)
        history = await collect(pool.events(after=0), 1)
        everything = [history[0]]
        async for event in pool.events(after=history[0].seq):
            everything.append(event)
            if isinstance(event, TaskFinished):
                break
        resume_at = everything[2].seq
        live = pool.events(after=resume_at)
        second = await pool.submit("two")
        await pool.wait(second, timeout=5)
        resumed = []
        async with asyncio.timeout(5):
            async for event in live:
                resumed.append(event)
                if isinstance(event, TaskFinished) and event.task_id == second:
                    break
    assert [e.seq for e in everything] == sorted(e.seq for e in everything)
    assert resumed[0].seq == resume_at + 1, "nothing missed"
    assert [e.seq for e in resumed] == list(range(resume_at + 1, resumed[-1].seq + 1))
    assert {e.task_id for e in resumed if e.task_id} == {first, second}


async def test_the_event_stream_can_follow_one_task() -> None:
    async with make_pool() as pool:
        noise = await pool.submit("noise")
        wanted = await pool.submit("wanted")
        await pool.wait(noise, timeout=5)
        await pool.wait(wanted, timeout=5)
        events = await collect(pool.events(after=0, task_id=wanted), 5)
    assert {e.task_id for e in events} == {wanted}
    assert events[0].type == "task_queued"


async def test_a_task_finished_by_a_second_pool_on_one_store_wakes_a_wait_in_the_first(
    shared_store: Callable[[], Store],
) -> None:
    async with Pool(PoolConfig(), slots=0, store=shared_store(), executor=FakeExecutor()) as client:
        task_id = await client.submit("do it")
        waiter = asyncio.ensure_future(client.wait(task_id, timeout=10))
        await asyncio.sleep(0)
        executor = FakeExecutor()
        async with make_pool(executor, store=shared_store()):
            record = await waiter
        assert record.state is TaskState.COMPLETED
        assert record.result is not None
        assert record.result.output == "done: do it"


async def test_a_cancel_from_a_second_pool_stops_the_run_in_the_first(
    shared_store: Callable[[], Store],
) -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, store=shared_store()) as worker:
        task_id = await worker.submit("long")
        await executor.wait_running(1)
        async with make_pool(slots=0, store=shared_store()) as other:
            record = await other.cancel(task_id)
            assert record.state is TaskState.CANCELLED
        # The worker's run stops when the cancel's event reaches it through the store.
        assert executor.running == {} or await _stopped(executor)
        final = await worker.wait(task_id, timeout=10)
        assert final.state is TaskState.CANCELLED


async def _stopped(executor: FakeExecutor) -> bool:
    async with asyncio.timeout(10):
        while executor.running:
            executor._changed.clear()
            await executor._changed.wait()
    return True


# ── no polling ───────────────────────────────────────────────────────


async def test_waiting_reads_the_store_once_however_long_the_wait() -> None:
    store = CountingStore(MemoryStore())
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, store=store.as_store()) as pool:
        task_id = await pool.submit("slow")
        await executor.wait_running(1)
        store.reset()
        waiter = asyncio.ensure_future(pool.wait(task_id))
        # However long it waits, nothing reads the task again until its run ends.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), timeout=1.0)
        assert store.calls["get_task"] == 1
        executor.release()
        assert (await waiter).state is TaskState.COMPLETED
    assert store.calls["get_task"] == 1


@contextlib.asynccontextmanager
async def parked_pool(
    slots: int, executor: FakeExecutor
) -> AsyncIterator[tuple[Pool, CountingStore]]:
    """A pool whose slots have each asked once, found nothing and parked; its store counts
    the calls from then on."""
    store = CountingStore(MemoryStore())
    async with make_pool(executor, slots=slots, store=store.as_store()) as pool:
        await _claims_reach(store, slots)
        await store.quiet()
        store.reset()
        yield pool, store


async def test_a_submit_makes_one_idle_slot_claim_not_all_of_them() -> None:
    executor = FakeExecutor(hold=True)
    async with parked_pool(8, executor) as (pool, store):
        task_id = await pool.submit("one task")
        await executor.wait_running(1)
        executor.release()
        await pool.wait(task_id, timeout=5)
        await store.quiet()
        # One claim took the task. The seven other idle slots were left alone, and the slot
        # that ran it parked when it was done: no other work had arrived meanwhile.
        assert store.calls["claim_task"] == 1


async def test_a_slot_asks_again_after_its_task_when_work_arrived_while_it_was_busy() -> None:
    executor = FakeExecutor(hold=True)
    async with parked_pool(1, executor) as (pool, store):
        first = await pool.submit("first")
        await executor.wait_running(1)
        second = await pool.submit("second")  # the only slot is busy
        store.reset()
        executor.release()
        await pool.wait(first, timeout=5)
        await pool.wait(second, timeout=5)
        await store.quiet()
        # When the first ended, its slot asked for the second (announced while it was
        # busy); when the second ended, nothing more had been announced, so it parked.
        assert store.calls["claim_task"] == 1


async def test_work_queued_together_while_a_slot_is_busy_is_not_left_for_the_woken_one() -> None:
    # Two tasks are queued in one turn while slot B runs a third: the parked slot A is woken
    # and takes the first; when B's task ends, B must ask for the second instead of leaving
    # it for A to take after its own task (or for the scheduler's 30 s fallback).
    executor = FakeExecutor(hold=True)
    async with parked_pool(2, executor) as (pool, _):
        zero = await pool.submit("zero")
        await executor.wait_running(1)
        one, two = await asyncio.gather(pool.submit("one"), pool.submit("two"))
        await executor.wait_running(2)
        executor.release(zero)
        await pool.wait(zero, timeout=5)
        running = await executor.wait_running(2)
        assert {r.task_id for r in running} == {one, two}
        executor.release()


async def test_slots_that_outnumber_the_work_ask_once_per_task() -> None:
    async with parked_pool(4, FakeExecutor()) as (pool, store):
        for i in range(20):
            assert (await pool.run(f"task {i}")).success
        await store.quiet()
        # Each task woke one parked slot, which took it and parked again when it was done
        # (asking after every task, as before, made 40 claims).
        assert store.calls["claim_task"] == 20


class HeldEmptyClaims:
    """A store whose claims that find nothing answer only once let go (as if slow)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.held = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def claim_task(self, *args: Any, **kwargs: Any) -> Any:
        claimed = await self.inner.claim_task(*args, **kwargs)
        if claimed is None and not self.release.is_set():
            self.held += 1
            await self.release.wait()
        return claimed


async def test_work_queued_while_every_slot_is_asking_is_claimed_at_once() -> None:
    # Both slots' first claims found nothing but have not answered yet when the task is
    # queued: no slot is parked to be woken, so one of the two must ask again (else the
    # task would wait for the scheduler's 30 s fallback).
    store = HeldEmptyClaims(new_store())
    async with make_pool(slots=2, store=cast(Store, store)) as pool:
        for _ in range(10_000):
            if store.held == 2:
                break
            await asyncio.sleep(0)
        assert store.held == 2
        task_id = await pool.submit("queued while both slots ask")
        store.release.set()
        record = await pool.wait(task_id, timeout=5)
        assert record.state is TaskState.COMPLETED


async def test_several_tasks_queued_while_the_only_slot_asks_all_run() -> None:
    # The slot's claim found nothing but has not answered when three tasks are queued: it
    # asks again for the first, and must not forget the other two (announced while it asked)
    # when it is done with it.
    store = HeldEmptyClaims(new_store())
    async with make_pool(slots=1, store=cast(Store, store)) as pool:
        for _ in range(10_000):
            if store.held == 1:
                break
            await asyncio.sleep(0)
        assert store.held == 1
        ids = [await pool.submit(f"queued while the slot asks {i}") for i in range(3)]
        store.release.set()
        for task_id in ids:
            record = await pool.wait(task_id, timeout=5)
            assert record.state is TaskState.COMPLETED


async def test_writes_side_by_side_publish_their_events_in_the_order_they_began() -> None:
    bus = EventBus()
    log = EventLog(MemoryStore(), bus, "worker-1")
    seen: list[int] = []
    bus.add_listener(lambda event: seen.append(event.seq))
    first_may_land = asyncio.Event()

    async def land(batch: list[Event], seq: int, wait: asyncio.Event | None) -> int:
        if wait is not None:
            await wait.wait()
        for offset, event in enumerate(batch):
            event.seq = seq + offset
        return seq

    first = asyncio.ensure_future(
        log.write(lambda b: land(b, 1, first_may_land), TaskQueued(task_id="t-1"))
    )
    await asyncio.sleep(0)
    second = asyncio.ensure_future(log.write(lambda b: land(b, 2, None), TaskQueued(task_id="t-2")))
    for _ in range(20):
        await asyncio.sleep(0)
    # The second write has landed, but its event waits for the first's; so does its caller.
    assert seen == []
    assert not second.done()
    first_may_land.set()
    assert await asyncio.gather(first, second) == [1, 2]
    assert seen == [1, 2]


async def test_emitted_events_a_write_did_not_log_go_before_the_next_writes() -> None:
    # The first write carries an emitted event, and its compare-and-set does not happen (it
    # logs nothing). A write begun meanwhile waits for it, and logs that event before its own.
    bus = EventBus()
    log = EventLog(MemoryStore(), bus, "worker-1")
    seen: list[str] = []
    bus.add_listener(lambda event: seen.append(f"{event.type}:{event.task_id}"))
    log.emit(TaskText(task_id="t-1", slot_id="slot-1", text="working"))
    may_fail = asyncio.Event()
    batches: list[list[str]] = []

    async def not_done(batch: list[Event]) -> None:
        await may_fail.wait()

    async def done(batch: list[Event]) -> None:
        batches.append([event.type for event in batch])
        for seq, event in enumerate(batch, start=10):
            event.seq = seq

    first = asyncio.ensure_future(log.write(not_done, TaskQueued(task_id="t-2")))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(
        log.write(done, TaskFinished(task_id="t-1", state="completed", success=True))
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert batches == []  # the second waits for the first
    may_fail.set()
    await asyncio.gather(first, second)
    assert batches == [["task_text", "task_finished"]]
    assert seen == ["task_text:t-1", "task_finished:t-1"]


async def test_a_flush_waits_for_a_write_carrying_earlier_emitted_events() -> None:
    store = MemoryStore()
    log = EventLog(store, EventBus(), "worker-1")
    log.emit(TaskText(task_id="t-1", slot_id="slot-1", text="first"))
    may_fail = asyncio.Event()

    async def not_done(batch: list[Event]) -> None:
        await may_fail.wait()

    carrying = asyncio.ensure_future(log.write(not_done))
    await asyncio.sleep(0)
    log.emit(TaskText(task_id="t-1", slot_id="slot-1", text="second"))
    flushing = asyncio.ensure_future(log.flush())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not flushing.done()
    may_fail.set()
    await asyncio.gather(carrying, flushing)
    logged = await store.read_events(after=0)
    assert [getattr(event, "text", None) for event in logged] == ["first", "second"]


async def _claims_reach(store: CountingStore, count: int) -> None:
    for _ in range(10_000):
        if store.calls["claim_task"] >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"only {store.calls['claim_task']} claims, expected {count}")


async def test_work_queued_by_another_pool_is_claimed_without_polling(
    shared_store: Callable[[], Store],
) -> None:
    executor = FakeExecutor()
    async with make_pool(executor, slots=2, store=shared_store()) as worker:
        async with make_pool(slots=0, store=shared_store()) as client:
            started = time.perf_counter()
            task_id = await client.submit("from elsewhere")
            record = await client.wait(task_id, timeout=10)
        assert record.state is TaskState.COMPLETED
        # Well under the scheduler's fallback: the queued event woke the worker.
        assert time.perf_counter() - started < 5
        assert worker.slots


async def test_context_set_in_another_process_reaches_the_next_task(
    shared_store: Callable[[], Store],
) -> None:
    prompts: list[str | None] = []

    def handler(request: ExecutionRequest) -> TaskResult:
        prompts.append(request.config.system_prompt)
        return TaskResult.success_result("ok", 0, 1)

    async with make_pool(FakeExecutor(handler=handler), store=shared_store()) as worker:
        await worker.run("first")
        async with make_pool(slots=0, store=shared_store()) as other:
            await other.context_set("goal", "ship it")
        changed = worker.subscribe(lambda e: e.type == "context_changed")
        with contextlib.suppress(TimeoutError):
            await changed.get(timeout=0)  # may have arrived already
        async with asyncio.timeout(10):
            while True:
                await worker.run("again")
                if prompts[-1] and "ship it" in prompts[-1]:
                    break
                await changed.get()
    assert prompts[0] is None or "ship it" not in prompts[0]


async def test_a_late_event_of_another_process_does_not_stop_a_run_the_store_still_gives_here(
    shared_store: Callable[[], Store],
) -> None:
    """Other processes' events arrive late: the requeue by the process that recovered a task
    can be read after this one claimed the task again. The run goes on unless the store says
    the task moved (as a real cancel from another process does)."""
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, slots=1, store=shared_store()) as worker:
        first = await worker.submit("first")
        await executor.wait_running(1)
        late = TaskRequeued(task_id=first, reason="its pool process died")
        late.worker_id = "another-host:1234:abcdef"
        worker.bus.publish(late)
        await worker.get_task(first)  # a store round trip for the check
        executor.release(first)
        record = await worker.wait(first, timeout=10)
        assert record.state is TaskState.COMPLETED, record.result

        # The task really was taken away: re-queued by a process that took this one for dead
        # and claimed by another. The run here stops, and its settlement leaves the task to
        # the other run (no cancel written over it).
        taken = await worker.submit("taken")
        await executor.wait_running(1)
        await worker.store.transition_task(
            taken, {TaskState.RUNNING}, TaskState.PENDING, now_ms=now_ms(), slot_id=None
        )
        elsewhere = make_pool(slots=0, store=shared_store())
        await elsewhere.open()  # a live pool process, whose claims nobody recovers
        other = elsewhere.worker_id
        claimed = await worker.store.claim_task(
            SlotId("slot-elsewhere"), None, None, other, now_ms()
        )
        assert claimed is not None
        assert claimed.record.id == taken
        requeued = TaskRequeued(task_id=taken, reason="its pool process died")
        requeued.worker_id = other
        worker.bus.publish(requeued)
        async with asyncio.timeout(10):
            while (await worker.status()).slots[0].state != "idle":  # noqa: ASYNC110 - no event
                await asyncio.sleep(0.02)
        stored = await worker.store.get_task(taken)
        assert stored is not None
        assert stored.record.state is TaskState.RUNNING
        assert stored.claimed_by == other
        logged = [e.type for e in await worker.store.read_events(task_id=taken)]
        assert "task_cancelled" not in logged, logged
        await worker.store.transition_task(
            taken, {TaskState.RUNNING}, TaskState.COMPLETED, now_ms=now_ms(),
            result=TaskResult.success_result("done elsewhere", 0, 1),
        )  # fmt: skip
        await elsewhere.close()

        executor.hold = True
        second = await worker.submit("second")
        (running,) = await executor.wait_running(1)
        assert running.task_id == second
        async with make_pool(slots=0, store=shared_store()) as other:
            await other.cancel(second)
        record = await worker.wait(second, timeout=10)
        assert record.state is TaskState.CANCELLED
        assert record.result is not None
        assert "cancel" in record.result.output


async def test_queued_events_carry_what_a_scheduler_elsewhere_needs() -> None:
    async with make_pool(slots=0) as pool:
        for i in range(3):
            await pool.submit(f"p{i}", priority=i, role="reviewer", tags=["x"])
        queued = await collect(pool.events(after=0, types={"task_queued"}), 3)
    for i, event in enumerate(queued):
        assert isinstance(event, TaskQueued)
        assert (event.priority, event.target.role, event.tags, event.prompt) == (
            i, "reviewer", ["x"], f"p{i}",
        )  # fmt: skip
