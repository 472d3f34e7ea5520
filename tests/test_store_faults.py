"""The engine under a failing store: results are never dropped, logs say it once."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from claude_pool import Pool, PoolConfig, TaskState
from claude_pool.errors import StoreError
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor


class DiskFullOnSettle:
    """A memory store whose ``settle_task`` fails as a full disk would, ``times`` times."""

    def __init__(self, times: int) -> None:
        self.inner = MemoryStore()
        self.failures_left = times
        self.settle_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def settle_task(self, *args: Any, **kwargs: Any) -> bool:
        self.settle_calls += 1
        if self.failures_left:
            self.failures_left -= 1
            raise StoreError("SQLite store pool.db: database or disk is full")
        return await self.inner.settle_task(*args, **kwargs)


async def test_a_failed_settlement_write_is_retried_until_the_result_is_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Regression: with the disk full the result was dropped, the task stayed running, was
    # re-queued at drain and ran again; 170 tracebacks in 12 s of log.
    store = DiskFullOnSettle(times=4)
    executor = FakeExecutor()
    pool = Pool(PoolConfig(), slots=1, store=store, executor=executor)  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, logger="claude_pool")
    async with pool:
        task_id = await pool.submit("write the report")
        record = await pool.wait(task_id, timeout=10)
        second = await pool.run("and the next one")
    assert record.state is TaskState.COMPLETED
    assert record.result is not None
    assert record.result.output == "done: write the report"
    assert second.success
    assert [r.prompt for r in executor.requests] == ["write the report", "and the next one"]
    assert store.settle_calls == 4 + 2
    errors = [r for r in caplog.records if "recording its result failed" in r.getMessage()]
    assert len(errors) == 1, "one line when it starts failing"
    assert any("recorded after 4 failed attempts" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records), "no tracebacks"
