"""Verification gates through the public seams: Pool + MemoryStore + FakeExecutor, with real
shell commands in the pool's directory."""

from __future__ import annotations

from pathlib import Path

from claude_pool import Pool, PoolConfig, SlotConfig, TaskResult, TaskState
from claude_pool.events import Event, TaskVerified
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor

FAILS_ONCE = 'test -f passed || { touch passed; echo "1 test failed: test_sum"; exit 1; }'


def make_pool(executor: FakeExecutor, cwd: Path, **kwargs: object) -> Pool:
    config = kwargs.pop("config", None) or PoolConfig()
    return Pool(config, slots=2, store=MemoryStore(), executor=executor, cwd=cwd, **kwargs)  # type: ignore[arg-type]


async def test_a_passing_verification_completes_the_task_and_is_recorded(tmp_path: Path) -> None:
    seen: list[Event] = []
    async with make_pool(FakeExecutor(), tmp_path) as pool:
        pool.add_listener(seen.append)
        task = await pool.submit("write the code", verify="echo all good")
        record = await pool.wait(task, timeout=10)
    assert record.state is TaskState.COMPLETED
    assert record.result is not None
    [check] = record.result.verifications
    assert (check.command, check.exit_code, check.passed) == ("echo all good", 0, True)
    assert check.output == "all good\n"
    assert check.at_ms > 0
    verified = [e for e in seen if isinstance(e, TaskVerified)]
    assert [(e.passed, e.attempt) for e in verified] == [(True, 1)]


async def test_a_verification_that_fails_once_sends_the_task_back_once_with_its_output(
    tmp_path: Path,
) -> None:
    executor = FakeExecutor()
    async with make_pool(executor, tmp_path) as pool:
        task = await pool.submit("make the sum work", verify=FAILS_ONCE)
        record = await pool.wait(task, timeout=10)
    assert record.state is TaskState.COMPLETED
    first, second = executor.requests
    assert first.prompt == "make the sum work"
    assert second.prompt.startswith("make the sum work\n\n---\n")
    assert "1 test failed: test_sum" in second.prompt
    assert "attempt 2 of 3" in second.prompt
    assert second.slot_id == first.slot_id, "the fix runs where the work was done"
    assert record.result is not None
    assert [c.passed for c in record.result.verifications] == [False, True]
    assert record.result.verifications[0].exit_code == 1
    [attempt] = record.attempts
    assert attempt.reason.startswith("verification failed")
    assert attempt.verification == record.result.verifications[0]
    assert attempt.cost_microdollars == 1000
    assert record.rejection_count == 1
    assert record.total_cost_microdollars == 2000


async def test_a_verification_that_keeps_failing_fails_the_task_after_the_last_attempt(
    tmp_path: Path,
) -> None:
    executor = FakeExecutor()
    async with make_pool(executor, tmp_path) as pool:
        task = await pool.submit("fix it", verify="echo still broken; exit 3", max_rejections=2)
        record = await pool.wait(task, timeout=10)
    assert record.state is TaskState.FAILED
    assert len(executor.requests) == 2
    assert record.result is not None
    assert not record.result.success
    assert "exited with 3 on attempt 2 of 2, the last" in record.result.output
    assert "still broken" in record.result.output
    assert [c.exit_code for c in record.result.verifications] == [3, 3]


async def test_a_verified_task_asked_for_review_waits_for_it_once_verified(
    tmp_path: Path,
) -> None:
    async with make_pool(FakeExecutor(), tmp_path) as pool:
        task = await pool.submit("change it", verify=FAILS_ONCE, review=True)
        record = await pool.wait(task, timeout=10)
        assert record.state is TaskState.PENDING_REVIEW
        assert record.result is not None
        assert [c.passed for c in record.result.verifications] == [False, True]


async def test_the_pool_and_slot_defaults_verify_every_task_and_a_task_overrides_them(
    tmp_path: Path,
) -> None:
    executor = FakeExecutor()
    config = PoolConfig(verify="echo pool check")
    async with Pool(
        config, slots=2, store=MemoryStore(), executor=executor, cwd=tmp_path,
        slot_configs=[SlotConfig(name="a"), SlotConfig(name="b", verify="echo slot check")],
    ) as pool:  # fmt: skip
        on_a = await pool.wait(await pool.submit("one", name="a"), timeout=10)
        on_b = await pool.wait(await pool.submit("two", name="b"), timeout=10)
        own = await pool.wait(await pool.submit("three", name="b", verify="true"), timeout=10)
    commands = [r.result.verifications[0].command for r in (on_a, on_b, own) if r.result]
    assert commands == ["echo pool check", "echo slot check", "true"]


async def test_a_verification_past_its_time_limit_is_killed_and_fails(tmp_path: Path) -> None:
    config = PoolConfig(verify_timeout_secs=1)
    async with make_pool(FakeExecutor(), tmp_path, config=config) as pool:
        task = await pool.submit("hang", verify="echo started; sleep 60", max_rejections=1)
        record = await pool.wait(task, timeout=20)
    assert record.state is TaskState.FAILED
    assert record.result is not None
    [check] = record.result.verifications
    assert check.timed_out
    assert check.exit_code is None
    assert "started" in check.output
    assert "killed after 1 s" in check.output


async def test_a_failed_run_is_not_verified(tmp_path: Path) -> None:
    executor = FakeExecutor(handler=lambda request: TaskResult.failure("could not"))
    async with make_pool(executor, tmp_path) as pool:
        record = await pool.wait(await pool.submit("x", verify="touch ran"), timeout=10)
    assert record.state is TaskState.FAILED
    assert not (tmp_path / "ran").exists()


async def test_a_chain_step_can_carry_a_verification(tmp_path: Path) -> None:
    from claude_pool import ChainSpec

    executor = FakeExecutor()
    spec = ChainSpec.model_validate(
        {
            "isolation": "none",
            "steps": [
                {"name": "build", "prompt": "build it", "verify": FAILS_ONCE},
                {"name": "report", "prompt": "report on {previous_output}"},
            ],
        }
    )
    async with make_pool(executor, tmp_path) as pool:
        result = await pool.chain(spec)
    assert result.state == "completed", result
    prompts = [r.prompt for r in executor.requests]
    assert len(prompts) == 3
    assert "1 test failed: test_sum" in prompts[1]
    assert prompts[2].startswith("report on done: build it")
