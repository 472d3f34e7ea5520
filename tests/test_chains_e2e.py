"""Worktrees and chains end to end: the real Claude Code CLI against the mock API, in a real
git repository."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_pool import PermissionMode, Pool, PoolConfig
from claude_pool.chain import ChainState, StepState
from claude_pool.executor import ClaudeCliExecutor, EventKind
from claude_pool.membership import this_host
from claude_pool.store import MemoryStore
from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    MockAnthropicAPI,
    MockRequest,
    Reply,
    Usage,
    bash,
    expected_cost_usd,
    read,
    write,
)
from claude_pool.testing.recording_executor import RecordingExecutor
from claude_pool.worktree import WorktreeManager

pytestmark = pytest.mark.cli

PoolFactory = Callable[..., Pool]
USAGE = Usage(input_tokens=1000, output_tokens=100)
COST = round(expected_cost_usd(DEFAULT_MODEL, USAGE) * 1e6)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def exists(path: str | Path | None) -> bool:
    return path is not None and Path(path).exists()


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.com")
    (root / "shared.txt").write_text("original\n")
    git(root, "add", "shared.txt")
    git(root, "commit", "-q", "-m", "initial")
    return root.resolve()


@pytest.fixture
def make_pool(
    claude_bin: Path, cli_env: dict[str, str], repo: Path, cli_events: list[RecordingExecutor]
) -> PoolFactory:
    def make(slots: int = 1, *, isolation: bool = False) -> Pool:
        config = PoolConfig(
            model=DEFAULT_MODEL,
            permission_mode=PermissionMode.BYPASS_PERMISSIONS,
            worktree_isolation=isolation,
        )
        executor = RecordingExecutor(ClaudeCliExecutor(claude_bin, env=cli_env))
        cli_events.append(executor)
        return Pool(config, slots=slots, store=MemoryStore(), executor=executor, cwd=repo)

    return make


def done_after_tools(api: MockAnthropicAPI) -> None:
    """Every turn that carries tool results is answered "done"."""
    api.on(Reply("done", usage=USAGE), tool_result=True)


async def test_two_slots_edit_the_same_file_in_their_own_worktrees(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, repo: Path
) -> None:
    async with make_pool(slots=3, isolation=True) as pool:
        slots = pool.slots
        paths = [Path(s.worktree_path or "") for s in slots]
        for i in range(2):
            # The CLI writes an existing file only after reading it.
            target = paths[i] / "shared.txt"
            mock_api.on(Reply([read(target)], usage=USAGE), prompt=f"edit as slot {i}", turn=0)
            mock_api.on(
                Reply([write(target, f"edited by slot {i}\n")], usage=USAGE),
                prompt=f"edit as slot {i}",
                turn=1,
            )
        done_after_tools(mock_api)
        results = await asyncio.gather(
            *(pool.run(f"edit as slot {i}", slot=slots[i].id) for i in range(2))
        )
        assert all(r.success for r in results), [r.output for r in results]
        for i in range(2):
            assert (paths[i] / "shared.txt").read_text() == f"edited by slot {i}\n"
        assert (paths[2] / "shared.txt").read_text() == "original\n"
        assert (repo / "shared.txt").read_text() == "original\n"
        summary = await pool.drain()
    # Work left uncommitted by the two editing slots is kept on their branches; the idle
    # slot's clean worktree goes with its branch.
    assert sorted(summary.kept_branches) == sorted(f"claude-pool/{s.id}" for s in slots[:2])
    assert not any(exists(p) for p in paths)
    for i in range(2):
        assert git(repo, "show", f"claude-pool/{slots[i].id}:shared.txt") == f"edited by slot {i}"
    assert f"claude-pool/{slots[2].id}" not in git(repo, "branch")


async def test_a_three_step_chain_passes_previous_output_and_an_output_var(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, repo: Path
) -> None:
    mock_api.on(Reply('{"result": {"file": "notes.txt"}}', usage=USAGE), prompt="plan it")
    mock_api.on(Reply("wrote notes.txt", usage=USAGE), prompt="write notes.txt")
    mock_api.on(Reply("all good", usage=USAGE), prompt="check")
    async with make_pool() as pool:
        result = await pool.chain(
            {
                "steps": [
                    {"name": "plan", "prompt": "plan it", "output_vars": {"f": "result.file"}},
                    {"prompt": "write {steps.plan.f}; the plan was {previous_output}"},
                    {"prompt": "check {previous_output}"},
                ]
            }
        )
    assert result.state is ChainState.COMPLETED, result.error
    prompts = [r.prompt for r in mock_api.main_requests]
    assert prompts == [
        "plan it",
        'write notes.txt; the plan was {"result": {"file": "notes.txt"}}',
        "check wrote notes.txt",
    ]
    assert [s.cost_microdollars for s in result.steps] == [COST] * 3
    assert result.total_cost_microdollars == 3 * COST
    assert result.output == "all good"
    assert result.kept_branch is None  # the chain's worktree had no work: removed
    assert not exists(result.workdir)


async def test_a_failing_step_is_retried_then_recovered_and_every_attempt_costs(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    # With max_turns=1, a reply that calls a tool ends the run as error_max_turns.
    mock_api.on(Reply("recovered fine", usage=USAGE), prompt="recover after")
    mock_api.on(Reply([bash("true")], usage=USAGE), prompt="flaky step")
    mock_api.on(Reply("next ran", usage=USAGE), prompt="then")
    async with make_pool() as pool:
        result = await pool.chain(
            {
                "isolation": "none",
                "steps": [
                    {
                        "prompt": "flaky step",
                        "overrides": {"max_turns": 1},
                        "retries": 1,
                        "recovery_prompt": "recover after: {error}",
                    },
                    {"prompt": "then {previous_output}"},
                ],
            }
        )
    assert result.state is ChainState.COMPLETED, result.error
    first = result.steps[0]
    assert [a.state for a in first.attempts] == ["failed", "failed", "completed"]
    assert first.recovered
    assert all(a.cost_microdollars == COST for a in first.attempts)
    assert first.cost_microdollars == 3 * COST
    recovery_prompt = mock_api.main_requests[2].prompt
    assert recovery_prompt.startswith("recover after: ")
    assert first.attempts[1].error is not None
    assert first.attempts[1].error in recovery_prompt
    assert mock_api.main_requests[3].prompt == "then recovered fine"
    assert result.total_cost_microdollars == 4 * COST


async def test_cancel_chain_kills_the_running_steps_cli_and_skips_the_rest(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, cli_events: list[RecordingExecutor]
) -> None:
    mock_api.on(Reply("too late", delay=60), prompt="slow step")
    async with make_pool() as pool:
        started = cli_events[-1].of_kind(EventKind.PROCESS_STARTED)
        chain_id = await pool.submit_chain(
            {"steps": [{"prompt": "slow step"}, {"prompt": "never runs"}]}
        )
        await asyncio.to_thread(mock_api.wait_for_requests, 1, 30)
        started = cli_events[-1].of_kind(EventKind.PROCESS_STARTED)
        pid = int(started[-1].data["pid"])
        assert pid_alive(pid)
        result = await asyncio.wait_for(pool.cancel_chain(chain_id), 30)
        assert not pid_alive(pid)
    assert result.state is ChainState.CANCELLED
    assert [s.state for s in result.steps] == [StepState.CANCELLED, StepState.SKIPPED]
    assert len(mock_api.main_requests) == 1


async def test_a_clone_chain_keeps_the_origin_url(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, repo: Path
) -> None:
    git(repo, "remote", "add", "origin", "https://example.invalid/team/project.git")
    done_after_tools(mock_api)
    mock_api.on(Reply([bash("git remote get-url origin")], usage=USAGE), prompt="where from")
    async with make_pool() as pool:
        result = await pool.chain({"isolation": "clone", "steps": [{"prompt": "where from"}]})
    assert result.state is ChainState.COMPLETED, result.error
    (tool_result,) = mock_api.main_requests[1].tool_results
    assert "https://example.invalid/team/project.git" in str(tool_result["content"])
    assert result.workdir is not None
    assert Path(result.workdir) != repo
    assert not exists(result.workdir)


async def test_three_chains_fan_out_side_by_side(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    def answer(request: MockRequest) -> Reply:
        # The first steps answer slowly, so all three are in flight at once even when one
        # slot's CLI starts seconds after the others on a loaded machine.
        delay = 5.0 if request.prompt.startswith("chain") else 0.0
        return Reply(f"answer to {request.prompt}", usage=USAGE, delay=delay)

    mock_api.default = answer  # type: ignore[assignment]
    async with make_pool(slots=3) as pool:
        fan = asyncio.create_task(
            pool.fan_out_chains(
                [
                    {"isolation": "none", "steps": [{"prompt": f"chain {i}"}, {"prompt": "more"}]}
                    for i in range(3)
                ]
            )
        )
        # All three first steps reach the API before any of them has answered.
        await asyncio.to_thread(mock_api.wait_for_requests, 3, 30)
        firsts = sorted(r.prompt for r in mock_api.main_requests[:3])
        assert firsts == ["chain 0", "chain 1", "chain 2"]
        results = await asyncio.wait_for(fan, 60)
    assert [r.state for r in results] == [ChainState.COMPLETED] * 3
    assert [r.output for r in results] == ["answer to more"] * 3


async def test_chain_progress_shows_the_running_steps_output_as_it_streams(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    mock_api.on(Reply("first step out", usage=USAGE), prompt="step one")
    mock_api.on(
        Reply(["Halfway through step two", bash("true")], usage=USAGE, chunk_delay=0.02),
        prompt="step two",
        tool_result=False,
    )
    mock_api.on(Reply("step two done", usage=USAGE, delay=1.5), prompt="step two")
    async with make_pool() as pool:
        chain_id = await pool.submit_chain(
            {"isolation": "none", "steps": [{"prompt": "step one"}, {"prompt": "step two"}]}
        )
        async with asyncio.timeout(30):
            progress = await pool.chain_result(chain_id)
            while "Halfway" not in progress.partial_output:  # polled, as a client would
                await asyncio.sleep(0.05)
                progress = await pool.chain_result(chain_id)
        assert progress.state is ChainState.RUNNING
        assert progress.current_step_name == "step-2"
        assert progress.partial_output == "Halfway through step two"
        assert progress.steps[0].output == "first step out"
        assert progress.steps[0].cost_microdollars == COST
        result = await pool.wait_chain(chain_id, timeout=30)
    assert result.state is ChainState.COMPLETED
    assert result.output == "step two done"


async def test_leftovers_of_a_crashed_run_are_cleaned_when_a_pool_starts(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, repo: Path
) -> None:
    dead_owner = f"{this_host()}:999999999:dead00"
    crashed = await WorktreeManager.for_directory(repo, None, dead_owner)
    leftover = await crashed.ensure("slot-crashed1")
    (leftover / "shared.txt").write_text("work of the crashed run\n")
    mock_api.on(Reply("ran in my own worktree", usage=USAGE))
    async with make_pool(slots=1, isolation=True) as pool:
        (report,) = pool.worktree_reports
        assert report.branch == "claude-pool/slot-crashed1"
        assert report.branch_kept
        assert not exists(leftover)
        result = await pool.run("hello")
        assert result.success, result.output
    assert git(repo, "show", "claude-pool/slot-crashed1:shared.txt") == "work of the crashed run"
