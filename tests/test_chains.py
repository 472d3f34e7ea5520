"""Chains on the engine: the memory/SQLite stores and the fake executor."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from claude_pool import ChainNotFound, Pool, PoolConfig, Settings, TaskOverrides, TaskState
from claude_pool.chain import (
    ChainResult,
    ChainSpec,
    ChainState,
    ChainStep,
    StepResult,
    StepState,
    extract_vars,
    new_chain_id,
    substitute,
)
from claude_pool.events import ChainStarted, Event, TaskText
from claude_pool.executor.base import EventKind, ExecutionRequest
from claude_pool.membership import this_host
from claude_pool.skills.model import SkillNotFound
from claude_pool.store import SqliteStore, Store
from claude_pool.testing.counting_store import CountingStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.types import TaskFilter, TaskResult
from engine_stores import new_store

pytestmark = pytest.mark.usefixtures("engine_store")
"""Each test runs on the memory store and on PostgreSQL (tests/engine_stores.py)."""


def ok(output: str, cost: int = 1000) -> TaskResult:
    return TaskResult.success_result(output, cost_microdollars=cost, turns_used=1)


def failed(output: str, cost: int) -> TaskResult:
    return TaskResult(output=output, success=False, cost_microdollars=cost)


def make_pool(executor: FakeExecutor, slots: int = 1, **kwargs: Any) -> Pool:
    if "store" not in kwargs:
        kwargs["store"] = new_store()
    return Pool(PoolConfig(), slots=slots, executor=executor, **kwargs)


def spec(*steps: ChainStep | dict[str, Any], **kwargs: Any) -> ChainSpec:
    kwargs.setdefault("isolation", "none")
    return ChainSpec.model_validate({"steps": list(steps), **kwargs})


def real(path: Path) -> Path:
    return path.resolve()


async def wait_requests(executor: FakeExecutor, count: int, timeout: float = 5.0) -> None:
    """Wait until the executor has been asked to run ``count`` tasks."""
    async with asyncio.timeout(timeout):
        while len(executor.requests) < count:  # noqa: ASYNC110 - the fake has no such event
            await asyncio.sleep(0.01)


def by_prompt(answers: dict[str, TaskResult]) -> Callable[[ExecutionRequest], TaskResult]:
    """Answer with the result of the first key found in the prompt."""

    def handle(request: ExecutionRequest) -> TaskResult:
        for key, result in answers.items():
            if key in request.prompt:
                return result
        return ok(f"echo: {request.prompt}")

    return handle


# ── placeholders and output variables ───────────────────────────────


def test_only_the_known_placeholders_are_replaced_and_doubled_ones_stay_literal() -> None:
    template = (
        'JSON {"a": {"b": 1}} {name} {previous_output} {{previous_output}} '
        "{steps.plan.files} {{steps.plan.files}} {error} {steps.plan}"
    )
    out = substitute(template, previous_output="PREV", step_vars={"plan": {"files": ["x", "y"]}})
    assert out == (
        'JSON {"a": {"b": 1}} {name} PREV {previous_output} '
        '["x", "y"] {steps.plan.files} {error} {steps.plan}'
    )
    recovery = substitute("fix {error} / {{error}}", previous_output="", step_vars={}, error="E")
    assert recovery == "fix E / {error}"
    # Inserted values are never scanned again.
    assert substitute("{previous_output}", previous_output="{error}", step_vars={}, error="E") == (
        "{error}"
    )


def test_output_vars_follow_dot_paths_into_json_output_even_inside_prose() -> None:
    output = 'Here you go:\n```json\n{"result": {"files": ["a.py"], "items": [{"n": 3}]}}\n```'
    values = extract_vars(output, {"files": "result.files", "n": "result.items.0.n"})
    assert values == {"files": ["a.py"], "n": 3}
    with pytest.raises(ValueError, match=r"output var 'x': path 'result.nope'.*no 'nope'"):
        extract_vars(output, {"x": "result.nope"})
    with pytest.raises(ValueError, match="not JSON"):
        extract_vars("plain words", {"x": "a"})


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"prompt": "go {previous_output}"}], "first step has no"),
        ([{"name": "a", "prompt": "x"}, {"prompt": "{steps.b.v}"}], "does not name an earlier"),
        ([{"name": "a", "prompt": "x"}, {"prompt": "{steps.a.v}"}], "has no output var 'v'"),
        ([{"name": "a", "prompt": "x"}, {"name": "a", "prompt": "y"}], "two steps are named"),
        ([{"args": {"x": "y"}}], "needs a prompt or a skill"),
        ([{"prompt": "x", "output_vars": {"v": "a..b"}}], "not a dot path"),
        ([], "at least 1"),
    ],
)
def test_a_chain_spec_with_bad_references_is_refused(
    steps: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ChainSpec.model_validate({"steps": steps})


# ── running ─────────────────────────────────────────────────────────


async def test_steps_run_in_order_with_previous_output_and_output_vars() -> None:
    executor = FakeExecutor(
        handler=by_prompt(
            {
                "make a plan": ok('{"result": {"files": ["a.py", "b.py"]}}', 1500),
                "build": ok("built both", 2500),
            }
        )
    )
    async with make_pool(executor) as pool:
        result = await pool.chain(
            spec(
                {"name": "plan", "prompt": "make a plan", "output_vars": {"files": "result.files"}},
                {"prompt": "build {steps.plan.files} per {previous_output}"},
                {"name": "check", "prompt": "check: {previous_output}"},
                tags=["release"],
            )
        )
        prompts = [r.prompt for r in executor.requests]
        tasks = await pool.list_tasks()
    assert result.state is ChainState.COMPLETED, result.error
    assert [s.name for s in result.steps] == ["plan", "step-2", "check"]
    assert [s.state for s in result.steps] == [StepState.COMPLETED] * 3
    assert prompts[1] == ('build ["a.py", "b.py"] per {"result": {"files": ["a.py", "b.py"]}}')
    assert prompts[2] == "check: built both"
    assert result.steps[0].vars == {"files": ["a.py", "b.py"]}
    assert result.output == "echo: check: built both"
    assert [s.cost_microdollars for s in result.steps] == [1500, 2500, 1000]
    assert result.total_cost_microdollars == 5000
    assert result.current_step is None
    assert all("release" in t.tags and f"chain:{result.id}" in t.tags for t in tasks)


async def test_each_step_is_a_fresh_one_shot_task_in_the_chains_directory(tmp_path: Path) -> None:
    executor = FakeExecutor()
    async with make_pool(executor, cwd=tmp_path) as pool:
        await pool.chain(spec({"prompt": "one", "overrides": {"model": "m-1"}}))
    (request,) = executor.requests
    assert request.session_id is None
    assert request.cwd == real(tmp_path)
    assert request.config.model == "m-1"


async def test_retries_then_recovery_continue_the_chain_and_every_attempt_is_paid_for() -> None:
    attempts = {"n": 0}

    def handle(request: ExecutionRequest) -> TaskResult:
        if request.prompt.startswith("recover"):
            return ok("recovered output", 400)
        if "flaky" in request.prompt:
            attempts["n"] += 1
            return failed(f"boom {attempts['n']}", 300)
        return ok(f"after: {request.prompt}", 100)

    executor = FakeExecutor(handler=handle)
    async with make_pool(executor) as pool:
        result = await pool.chain(
            spec(
                {"prompt": "flaky", "retries": 2, "recovery_prompt": "recover from {error}"},
                {"prompt": "next {previous_output}"},
            )
        )
    assert result.state is ChainState.COMPLETED, result.error
    first = result.steps[0]
    assert [a.state for a in first.attempts] == ["failed", "failed", "failed", "completed"]
    assert [a.recovery for a in first.attempts] == [False, False, False, True]
    assert executor.requests[3].prompt == "recover from boom 3"
    assert first.recovered
    assert first.output == "recovered output"
    assert first.cost_microdollars == 3 * 300 + 400
    assert result.steps[1].output == "after: next recovered output"
    assert result.total_cost_microdollars == 1300 + 100


async def test_a_failed_step_fails_the_chain_skips_the_rest_and_keeps_its_cost() -> None:
    executor = FakeExecutor(handler=by_prompt({"bad": failed("it broke", 700)}))
    async with make_pool(executor) as pool:
        result = await pool.chain(
            spec(
                {"prompt": "good"},
                {"name": "bad", "prompt": "bad step", "retries": 1},
                {"prompt": "never"},
                {"prompt": "never either"},
            )
        )
    assert result.state is ChainState.FAILED
    assert [s.state for s in result.steps] == [
        StepState.COMPLETED,
        StepState.FAILED,
        StepState.SKIPPED,
        StepState.SKIPPED,
    ]
    assert result.steps[1].cost_microdollars == 1400  # both attempts, though they failed
    assert result.total_cost_microdollars == 1000 + 1400
    assert result.steps[1].error == "it broke"
    assert result.error is not None
    assert "step 'bad' failed: it broke" in result.error
    assert len(executor.requests) == 3


async def test_a_missing_output_var_fails_the_step_clearly() -> None:
    executor = FakeExecutor(handler=by_prompt({"plan": ok('{"result": {}}', 10)}))
    async with make_pool(executor) as pool:
        result = await pool.chain(
            spec(
                {"name": "plan", "prompt": "plan", "output_vars": {"files": "result.files"}},
                {"prompt": "use {steps.plan.files}"},
            )
        )
    assert result.state is ChainState.FAILED
    assert result.steps[0].error is not None
    assert "output var 'files': path 'result.files'" in result.steps[0].error
    assert result.steps[0].cost_microdollars == 10
    assert result.steps[1].state is StepState.SKIPPED


async def test_skill_steps_go_through_the_resolver_and_the_steps_overrides_win() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    def resolver(name: str, args: Any) -> tuple[str, TaskOverrides | None]:
        seen.append((name, dict(args)))
        return f"skill {name} on {args['path']}", TaskOverrides(model="skill-model", max_turns=3)

    executor = FakeExecutor()
    async with make_pool(executor) as pool:
        result = await pool.chain(
            spec(
                {"prompt": "list files"},
                {
                    "skill": "code-review",
                    "args": {"path": "{previous_output}"},
                    "overrides": {"model": "step-model"},
                },
            ),
            skill_resolver=resolver,
        )
    assert result.state is ChainState.COMPLETED, result.error
    assert seen == [("code-review", {"path": "done: list files"})]
    assert executor.requests[1].prompt == "skill code-review on done: list files"
    assert executor.requests[1].config.model == "step-model"
    assert executor.requests[1].config.max_turns == 3


async def test_an_unknown_skill_is_refused_before_the_chain_starts() -> None:
    executor = FakeExecutor()
    async with make_pool(executor) as pool:
        with pytest.raises(SkillNotFound, match="no-such-skill-here"):
            await pool.chain(spec({"prompt": "first"}, {"skill": "no-such-skill-here"}))
        assert await pool.list_chains() == []
    assert executor.requests == []


async def test_an_unknown_skill_fails_its_step_with_a_custom_resolvers_reason() -> None:
    def resolver(name: str, args: Any) -> tuple[str, TaskOverrides | None]:
        raise SkillNotFound(name)

    async with make_pool(FakeExecutor()) as pool:
        result = await pool.chain(spec({"skill": "no-such-skill-here"}), skill_resolver=resolver)
    assert result.state is ChainState.FAILED
    assert result.error is not None
    assert "no-such-skill-here" in result.error


async def test_chain_result_shows_the_running_step_and_its_partial_output() -> None:
    executor = FakeExecutor(
        hold=True,
        events=lambda r: [(EventKind.ASSISTANT_TEXT, {"text": f"working on: {r.prompt}"})],
    )
    async with make_pool(executor) as pool:
        texts = pool.subscribe(lambda e: isinstance(e, TaskText))
        chain_id = await pool.submit_chain(spec({"prompt": "first"}, {"prompt": "second"}))
        (running,) = await executor.wait_running(1)
        executor.release(running.task_id)
        await wait_requests(executor, 2)
        # The second step's text reaches the chain with its event.
        for _ in range(2):
            await texts.get(timeout=5)
        progress = await pool.chain_result(chain_id)
        assert progress.state is ChainState.RUNNING
        assert progress.current_step == 1
        assert progress.current_step_name == "step-2"
        assert progress.partial_output == "working on: second"
        assert progress.steps[0].state is StepState.COMPLETED
        assert progress.steps[0].output == "done: first"
        assert progress.steps[0].cost_microdollars == 1000
        assert progress.steps[1].state is StepState.RUNNING
        assert progress.current_task_id == executor.requests[1].task_id
        executor.release()
        final = await pool.wait_chain(chain_id, timeout=5)
    assert final.state is ChainState.COMPLETED
    assert final.partial_output == ""


async def test_cancel_chain_stops_the_running_step_and_skips_the_rest() -> None:
    executor = FakeExecutor(hold=True, cancel_cost_microdollars=250)
    async with make_pool(executor) as pool:
        chain_id = await pool.submit_chain(spec({"prompt": "long"}, {"prompt": "later"}))
        (running,) = await executor.wait_running(1)
        result = await asyncio.wait_for(pool.cancel_chain(chain_id), 5)
        task = await pool.get_task(running.task_id)
        again = await pool.cancel_chain(chain_id)
    assert result.state is ChainState.CANCELLED
    assert [s.state for s in result.steps] == [StepState.CANCELLED, StepState.SKIPPED]
    assert result.steps[0].cost_microdollars == 250
    assert result.total_cost_microdollars == 250
    assert task.state is TaskState.CANCELLED
    assert len(executor.requests) == 1
    assert again.state is ChainState.CANCELLED


async def test_fan_out_chains_run_side_by_side_and_one_failure_keeps_the_others() -> None:
    executor = FakeExecutor(hold=True)
    specs: list[Any] = [
        spec({"prompt": f"chain {i} step 1"}, {"prompt": "step 2"}, name=f"c{i}") for i in range(3)
    ]
    specs.insert(1, {"name": "broken", "steps": [{"prompt": "{steps.x.y}"}]})
    async with make_pool(executor, slots=3) as pool:
        fan = asyncio.create_task(pool.fan_out_chains(specs))
        first_steps = await executor.wait_running(3)  # all three chains at once
        assert sorted(r.prompt for r in first_steps) == [f"chain {i} step 1" for i in range(3)]
        executor.release()
        results = await asyncio.wait_for(fan, 5)
    assert [r.name for r in results] == ["c0", "broken", "c1", "c2"]
    assert [r.state for r in results] == [
        ChainState.COMPLETED,
        ChainState.FAILED,
        ChainState.COMPLETED,
        ChainState.COMPLETED,
    ]
    assert results[1].error is not None
    assert "not started" in results[1].error


async def test_chain_progress_is_kept_in_the_store_for_later_pools(
    shared_store: Callable[[], Store],
) -> None:
    async with make_pool(FakeExecutor(), store=shared_store()) as pool:
        done = await pool.chain(spec({"prompt": "a"}, name="kept"))
    async with make_pool(FakeExecutor(), slots=0, store=shared_store()) as later:
        again = await later.chain_result(done.id)
        listed = await later.list_chains(state="completed")
        with pytest.raises(ChainNotFound):
            await later.chain_result("chain-missing")
    assert again == done
    assert [c.id for c in listed] == [done.id]


# ── restarts ────────────────────────────────────────────────────────


async def test_a_drained_chain_stays_running_and_the_next_pool_resumes_it(
    shared_store: Callable[[], Store],
) -> None:
    executor = FakeExecutor(hold=True, cancel_cost_microdollars=50)
    pool = make_pool(executor, store=shared_store())
    await pool.open()
    chain_id = await pool.submit_chain(spec({"prompt": "one"}, {"prompt": "two {previous_output}"}))
    (first,) = await executor.wait_running(1)
    executor.release(first.task_id)
    await wait_requests(executor, 2)
    waiter = asyncio.create_task(pool.wait_chain(chain_id))
    summary = await pool.drain(grace_secs=0)
    await pool.close()
    interrupted = await asyncio.wait_for(waiter, 5)
    assert summary.chains_interrupted == 1
    assert interrupted.state is ChainState.RUNNING
    assert interrupted.steps[1].attempts[0].state == "interrupted"

    second = FakeExecutor()
    async with make_pool(second, store=shared_store()) as resumed:
        result = await resumed.wait_chain(chain_id, timeout=5)
    assert result.state is ChainState.COMPLETED, result.error
    assert [r.prompt for r in second.requests] == ["two done: one"]  # step one is not re-run
    assert [a.state for a in result.steps[1].attempts] == ["interrupted", "completed"]
    assert result.steps[1].cost_microdollars == 50 + 1000
    assert result.total_cost_microdollars == 1000 + 1050


_CRASHING_POOL = textwrap.dedent(
    """
    import asyncio, sys
    from claude_pool import Pool, PoolConfig, Settings
    from claude_pool.store import SqliteStore
    from claude_pool.testing.fake_executor import FakeExecutor

    async def main():
        executor = FakeExecutor(hold=True)
        pool = Pool(PoolConfig(), slots=1, executor=executor, store=SqliteStore(sys.argv[1]),
                    settings=Settings(heartbeat_secs=0.2))
        await pool.open()
        chain_id = await pool.submit_chain({"isolation": "none", "steps": [
            {"name": "plan", "prompt": "plan", "output_vars": {"n": "n"}},
            {"prompt": "build {steps.plan.n}"},
            {"prompt": "ship {previous_output}"}]})
        executor.handler = lambda r: __import__("claude_pool").TaskResult.success_result(
            '{"n": 7}', 1000, 1)
        (first,) = await executor.wait_running(1)
        executor.release(first.task_id)
        while len(executor.requests) < 2:
            await asyncio.sleep(0.01)
        print(chain_id, flush=True)
        await asyncio.sleep(600)  # killed here, with step two running

    asyncio.run(main())
    """
)


@pytest.mark.own_store  # a SQLite file another process opens
async def test_a_chain_of_a_crashed_pool_resumes_on_its_running_step(tmp_path: Path) -> None:
    db = tmp_path / "pool.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    crashing = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASHING_POOL, str(db), stdout=subprocess.PIPE, env=env
    )
    assert crashing.stdout is not None
    chain_id = (await asyncio.wait_for(crashing.stdout.readline(), 30)).decode().strip()
    crashing.kill()
    await crashing.wait()

    executor = FakeExecutor()
    pool = make_pool(executor, store=SqliteStore(db), settings=Settings(heartbeat_secs=0.2))
    async with pool:
        result = await pool.wait_chain(chain_id, timeout=10)
    assert result.state is ChainState.COMPLETED, result.error
    # The running step's task was re-queued by task recovery and taken up again; the finished
    # first step was not run again.
    assert [r.prompt for r in executor.requests] == ["build 7", "ship done: build 7"]
    assert result.steps[1].attempts[0].task_id == executor.requests[0].task_id
    assert result.total_cost_microdollars == 3000


async def test_chains_of_a_live_pool_are_not_taken_over(shared_store: Callable[[], Store]) -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, store=shared_store()) as owner:
        chain_id = await owner.submit_chain(spec({"prompt": "slow"}))
        await executor.wait_running(1)
        async with make_pool(FakeExecutor(), store=shared_store()) as other:
            seen = await other.chain_result(chain_id)
            assert seen.state is ChainState.RUNNING
        executor.release()
        result = await owner.wait_chain(chain_id, timeout=5)
    assert result.state is ChainState.COMPLETED


DEAD_OWNER = f"{this_host()}:999999999:dead00"
"""A worker id of this host whose process is gone (no pid is that high)."""


async def orphan_chain(store: Store, chain_spec: ChainSpec, *, announced: bool = False) -> str:
    """Store a chain as a pool process that died before running it would have left it;
    ``announced``: with the ``chain_started`` event that process logged (as every pool does),
    which tells the pools that are open that an orphan may come."""
    result = ChainResult(
        id=new_chain_id(),
        isolation=chain_spec.isolation,
        steps=[StepResult(name=n, index=i) for i, n in enumerate(chain_spec.step_names())],
    )
    document = {
        "result": result.model_dump(mode="json"),
        "spec": chain_spec.model_dump(mode="json"),
        "owner": DEAD_OWNER,
    }
    started = ChainStarted(chain_id=result.id, steps=chain_spec.step_names())
    started.worker_id = DEAD_OWNER
    await store.upsert_chain(
        result.id, document, result.state.value, result.created_at_ms,
        events=[started] if announced else (),
    )  # fmt: skip
    return result.id


class ListingTogether(SqliteStore):
    """A SQLite store whose first listing of pending chains waits for the other stores' first
    one: pools opening at once all see a chain as orphaned before any of them resumes it."""

    def __init__(self, path: Path, barrier: asyncio.Barrier) -> None:
        super().__init__(path)
        self._barrier: asyncio.Barrier | None = barrier

    async def list_chains(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        docs = await super().list_chains(state, limit, offset)
        barrier, self._barrier = self._barrier, None
        if barrier is not None and state == ChainState.PENDING:
            await asyncio.wait_for(barrier.wait(), 5)
        return docs


@pytest.mark.own_store  # a SQLite file (subclassed to time the race)
async def test_two_pools_opening_at_once_resume_an_orphaned_chain_only_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "pool.db"
    store = SqliteStore(db)
    await store.open()
    chain_id = await orphan_chain(store, spec({"prompt": "one"}, {"prompt": "two"}))
    await store.close()
    barrier = asyncio.Barrier(2)
    first, second = FakeExecutor(), FakeExecutor()
    pools = [
        make_pool(executor, store=ListingTogether(db, barrier), cwd=tmp_path)
        for executor in (first, second)
    ]
    await asyncio.gather(*(pool.open() for pool in pools))
    try:
        result = await pools[0].wait_chain(chain_id, timeout=5)
        assert result.state is ChainState.COMPLETED, result.error
        # Each step ran exactly once: a second resume would submit "one" again. Step tasks
        # are fresh-session tasks, so either pool's slots may take them.
        ran = sorted(r.prompt for e in (first, second) for r in e.requests)
        assert ran == ["one", "two"]
        stored = await pools[0].store.get_chain(chain_id)
        assert stored is not None
        assert stored["owner"] in {pool.worker_id for pool in pools}
        steps = await pools[0].store.list_tasks(TaskFilter(tags=[f"chain:{chain_id}"]))
        assert len(steps) == 2
    finally:
        await asyncio.gather(*(pool.close() for pool in pools))


@pytest.mark.own_store  # a SQLite file (subclassed to time the race)
async def test_a_live_pool_takes_over_the_chains_of_a_pool_that_dies_later(
    tmp_path: Path,
) -> None:
    executor = FakeExecutor()
    store = SqliteStore(tmp_path / "pool.db")
    settings = Settings(heartbeat_secs=0.05)
    async with make_pool(executor, store=store, settings=settings, cwd=tmp_path) as pool:
        # The chain's owner dies after this pool opened: its heartbeat picks the chain up.
        chain_id = await orphan_chain(
            pool.store, spec({"prompt": "one"}, {"prompt": "two"}), announced=True
        )
        result = await pool.wait_chain(chain_id, timeout=5)
        assert result.state is ChainState.COMPLETED, result.error
        assert [r.prompt for r in executor.requests] == ["one", "two"]


@pytest.mark.own_store  # counts the calls of a SQLite store
async def test_heartbeats_read_no_chains_while_no_other_process_has_one_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking for orphaned chains reads the store only when another process's chain is
    known to be open, or once a minute in case an event was missed."""
    counting = CountingStore(SqliteStore(tmp_path / "pool.db"))
    settings = Settings(heartbeat_secs=0.02)
    executor = FakeExecutor()
    async with make_pool(
        executor, store=counting.as_store(), settings=settings, cwd=tmp_path
    ) as pool:
        beats = counting.calls["heartbeat_worker"]
        async with asyncio.timeout(10):
            while counting.calls["heartbeat_worker"] < beats + 5:  # noqa: ASYNC110 - no event
                await asyncio.sleep(0.02)
        assert counting.calls["list_chains"] == 2  # the look at open: running, pending
        # A chain stored with no event (an old pool's, a missed event) is found at the next
        # full look.
        monkeypatch.setattr("claude_pool.chain.runner.ORPHAN_LOOK_EVERY_SECS", 0.0)
        chain_id = await orphan_chain(counting.inner, spec({"prompt": "silent"}))
        result = await pool.wait_chain(chain_id, timeout=5)
        assert result.state is ChainState.COMPLETED, result.error
        assert [r.prompt for r in executor.requests] == ["silent"]
        assert counting.calls["list_chains"] > 2


def test_chain_results_are_json_round_trippable() -> None:
    result = ChainResult(id="chain-1", steps=[], tags=["x"])
    assert ChainResult.model_validate(json.loads(result.model_dump_json())) == result


async def test_skill_steps_default_to_the_pools_skill_registry(tmp_path: Path) -> None:
    executor = FakeExecutor()
    async with make_pool(executor, cwd=tmp_path) as pool:
        result = await pool.chain(spec({"skill": "summarize", "args": {"target": "README.md"}}))
    assert result.state is ChainState.COMPLETED, result.error
    (request,) = executor.requests
    assert "README.md" in request.prompt
    assert "Read" in request.config.allowed_tools  # the skill's own overrides apply


class TakenOverOnSave(SqliteStore):
    """A SQLite store that, once ``take_over`` is set, hands the chain to ``new_owner`` with
    ``claim_chain`` just before the first save of its document for which ``take_over`` is
    true, and records every chain save's outcome from then on."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.take_over: Callable[[dict[str, Any]], bool] | None = None
        self.new_owner = "another-pool"
        self.taken: dict[str, Any] | None = None
        self.saves_after: list[bool] = []
        self.refused_docs: list[dict[str, Any]] = []
        self.refused = asyncio.Event()

    async def upsert_chain(
        self,
        chain_id: str,
        data: Any,
        state: str,
        now_ms: int,
        *,
        expected_owner: str | None = None,
        events: Sequence[Event] = (),
    ) -> bool:
        if self.take_over is not None and self.take_over(dict(data)):
            self.take_over = None
            assert await self.claim_chain(chain_id, data["owner"], self.new_owner, now_ms)
            self.taken = await self.get_chain(chain_id)
        saved = await super().upsert_chain(
            chain_id, data, state, now_ms, expected_owner=expected_owner, events=events
        )
        if self.taken is not None:
            self.saves_after.append(saved)
            if not saved:
                self.refused_docs.append(dict(data))
                self.refused.set()
        return saved


def attempts_of(doc: dict[str, Any], step: int) -> list[dict[str, Any]]:
    attempts: list[dict[str, Any]] = doc["result"]["steps"][step]["attempts"]
    return attempts


@pytest.mark.own_store  # a SQLite file (subclassed to time the race)
async def test_a_pool_whose_chain_was_taken_over_stops_running_it_and_leaves_its_progress(
    tmp_path: Path,
) -> None:
    db = tmp_path / "pool.db"
    store = TakenOverOnSave(db)
    executor = FakeExecutor(hold=True)
    async with (
        make_pool(executor, store=store) as first,
        make_pool(FakeExecutor(), slots=0, store=SqliteStore(db)) as second,
    ):
        store.new_owner = second.worker_id
        chain_id = await first.submit_chain(spec({"prompt": "one"}, {"prompt": "two"}))
        (running,) = await executor.wait_running(1)
        # The first pool's heartbeat went stale: the second takes the chain over meanwhile
        # (here, just before the first pool's next save: when step one has finished).
        store.take_over = lambda doc: attempts_of(doc, 0)[0]["state"] != "running"
        executor.release(running.task_id)
        await asyncio.wait_for(store.refused.wait(), 5)
        summary = await first.drain(grace_secs=0)
        stored = await second.store.get_chain(chain_id)
    assert store.taken is not None
    assert store.taken["owner"] == second.worker_id
    assert store.taken["result"]["steps"][0]["state"] == "running"
    # The first pool's save was refused, and it saved nothing more: the stored document is
    # the new owner's, as it was taken over.
    assert store.saves_after == [False]
    assert stored == store.taken
    # The first pool stopped running the chain: no second step, nothing left to interrupt.
    assert [r.prompt for r in executor.requests] == ["one"]
    assert summary.chains_interrupted == 0


@pytest.mark.own_store  # a SQLite file (subclassed to time the race)
async def test_a_taken_over_pool_cancels_the_step_task_the_new_owner_does_not_know(
    tmp_path: Path,
) -> None:
    db = tmp_path / "pool.db"
    store = TakenOverOnSave(db)
    executor = FakeExecutor(hold=True)
    async with (
        make_pool(executor, store=store) as pool,
        make_pool(FakeExecutor(), slots=0, store=SqliteStore(db)) as other,
    ):
        store.new_owner = other.worker_id
        chain_id = await pool.submit_chain(spec({"prompt": "one"}, {"prompt": "two"}))
        (running,) = await executor.wait_running(1)
        # Taken over just before the save recording step two's task: the new owner's
        # document does not know that task.
        store.take_over = lambda doc: bool(attempts_of(doc, 1))
        executor.release(running.task_id)
        await asyncio.wait_for(store.refused.wait(), 5)
        (refused,) = store.refused_docs
        (attempt,) = attempts_of(refused, 1)
        step_two = await pool.wait(attempt["task_id"], timeout=5)
        stored = await other.store.get_chain(chain_id)
    assert stored == store.taken
    assert stored is not None
    assert attempts_of(stored, 1) == []
    assert store.saves_after == [False]
    assert step_two.state is TaskState.CANCELLED
    assert executor.requests[0].prompt == "one"
