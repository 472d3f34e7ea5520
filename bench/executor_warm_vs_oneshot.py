"""Per-task overhead of a warm CLI process vs one process per task, on trivial prompts.

Starts the mock Anthropic API, runs N trivial tasks on one persistent slot (one warm process)
and N tasks in ephemeral mode (a process each), and prints mean / p50 per task for both and the
ratio. Goal: warm mode at least 5x faster per task. Figures only, no asserts.

    .venv/bin/python bench/executor_warm_vs_oneshot.py [--tasks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from claude_pool.config import EffectiveConfig
from claude_pool.executor import ClaudeCliExecutor, ExecutionRequest
from claude_pool.testing.claude_cli import ensure_claude, mock_cli_env
from claude_pool.testing.mock_api import DEFAULT_MODEL, MockAnthropicAPI, Reply
from claude_pool.types import SlotId, SlotMode, TaskId


async def run_tasks(
    executor: ClaudeCliExecutor, cwd: Path, mode: SlotMode, count: int, slot: str
) -> list[float]:
    timings: list[float] = []
    session: str | None = None
    for n in range(count):
        request = ExecutionRequest(
            task_id=TaskId(f"{slot}-{n}"),
            slot_id=SlotId(slot),
            prompt=f"trivial prompt {n}",
            config=EffectiveConfig(model=DEFAULT_MODEL),
            cwd=cwd,
            mode=mode,
            session_id=session if mode is SlotMode.PERSISTENT else None,
            one_off=mode is SlotMode.EPHEMERAL,
        )
        started = time.perf_counter()
        result = await executor.execute(request)
        timings.append(time.perf_counter() - started)
        if not result.success:
            sys.exit(f"task failed: {result.output}")
        session = result.session_id
    return timings


def describe(name: str, timings: list[float]) -> tuple[float, float]:
    mean, p50 = statistics.fmean(timings), statistics.median(timings)
    print(f"{name:>22}: mean {mean * 1000:8.1f} ms   p50 {p50 * 1000:8.1f} ms   n={len(timings)}")
    return mean, p50


async def measure(
    api: MockAnthropicAPI, claude_bin: Path, home: Path, cwd: Path, count: int
) -> None:
    executor = ClaudeCliExecutor(claude_bin, env=mock_cli_env(api.base_url, home))
    try:
        version = await executor.check()
        # The first warm task pays the process start; it is reported apart.
        warm_all = await run_tasks(executor, cwd, SlotMode.PERSISTENT, count + 1, "warm")
        oneshot = await run_tasks(executor, cwd, SlotMode.EPHEMERAL, count, "oneshot")
    finally:
        await executor.aclose()
    print(f"Claude Code CLI {version} against the mock API, {count} trivial tasks each")
    print(f"{'warm: first task':>22}: {warm_all[0] * 1000:8.1f} ms (includes the process start)")
    warm_mean, warm_p50 = describe("warm: later tasks", warm_all[1:])
    one_mean, one_p50 = describe("one process per task", oneshot)
    ratio_mean, ratio_p50 = one_mean / warm_mean, one_p50 / warm_p50
    print(f"{'warm speed-up':>22}: mean {ratio_mean:6.1f}x   p50 {ratio_p50:6.1f}x   (goal >= 5x)")


def main(count: int) -> None:
    claude_bin = ensure_claude()
    with MockAnthropicAPI(default=Reply("ok")) as api, tempfile.TemporaryDirectory() as tmp:
        home, cwd = Path(tmp, "home"), Path(tmp, "work")
        home.mkdir()
        cwd.mkdir()
        asyncio.run(measure(api, claude_bin, home, cwd, count))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    main(parser.parse_args().tasks)
