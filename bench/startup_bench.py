"""Time to first result with 1, 4 and 16 slots: open a pool, submit one trivial task per slot
at once, and time the first and the last result from the moment ``open`` was called.

The real Claude Code CLI runs against the project's mock Anthropic API (a separate process).
Two ways of starting slots are compared: ``at_open`` (the default: every slot's process starts
when the pool opens, at most ``max_concurrent_spawns`` at once, and tasks go to the slots ready
first) and ``lazy`` (``start_slots_at_open`` off: each process starts with its slot's first
task, all at once). Rounds are interleaved; figures are medians.

Goal (issue 16): with 16 slots the first result comes within 1.5x of one slot's.

    .venv/bin/python bench/startup_bench.py [--slots 1 4 16] [--rounds 3] [--modes at_open lazy]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from claude_pool import Pool, PoolConfig, Settings
from claude_pool.executor import ClaudeCliExecutor
from claude_pool.store import MemoryStore
from claude_pool.testing.claude_cli import ensure_claude, mock_cli_env
from claude_pool.testing.mock_api import DEFAULT_MODEL

sys.path.insert(0, str(Path(__file__).parent))
from peers import start_mock

MODES = ("at_open", "lazy")


async def first_and_last(
    claude_bin: Path, env: dict[str, str], cwd: Path, slots: int, mode: str
) -> tuple[float, float]:
    """Seconds from ``open`` to the first and to the last of ``slots`` results."""
    settings = Settings(store=":memory:", start_slots_at_open=mode == "at_open")
    started = time.perf_counter()
    async with Pool(
        PoolConfig(model=DEFAULT_MODEL),
        slots=slots,
        store=MemoryStore(),
        executor=ClaudeCliExecutor(claude_bin, env=env),
        settings=settings,
        cwd=cwd,
    ) as pool:
        ids = [await pool.submit(f"trivial task {n}") for n in range(slots)]
        done: list[float] = []

        async def wait(task_id: str) -> None:
            record = await pool.wait(task_id, timeout=300)
            if record.result is None or not record.result.success:
                sys.exit(f"a task failed: {record.result}")
            done.append(time.perf_counter() - started)

        await asyncio.gather(*(wait(t) for t in ids))
    return min(done), max(done)


async def main(
    slot_counts: list[int], modes: list[str], rounds: int, env: dict[str, str], cwd: Path
) -> None:
    claude_bin = ensure_claude()
    figures: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for round_ in range(1, rounds + 1):
        for slots in slot_counts:
            for mode in modes:
                first, last = await first_and_last(claude_bin, env, cwd, slots, mode)
                figures.setdefault((mode, slots), []).append((first, last))
                print(
                    f"round {round_}: {mode:>7} {slots:>2} slot(s): first result "
                    f"{first:5.2f}s, last {last:5.2f}s",
                    flush=True,
                )
    print(f"\nmedian of {rounds} interleaved round(s), {os.cpu_count()} CPU(s):")
    print(f"{'mode':>7} | {'slots':>5} | {'first result':>12} | {'last result':>11} | vs 1 slot")
    for mode in modes:
        one = statistics.median(f for f, _ in figures.get((mode, 1), [(float("nan"), 0.0)]))
        for slots in slot_counts:
            runs = figures[(mode, slots)]
            first = statistics.median(f for f, _ in runs)
            last = statistics.median(last for _, last in runs)
            print(
                f"{mode:>7} | {slots:>5} | {first:11.2f}s | {last:10.2f}s | {first / one:5.2f}x"
                + (" (goal <= 1.5)" if slots == max(slot_counts) and slots > 1 else "")
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    mock, base_url = start_mock()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home, cwd = Path(tmp, "home"), Path(tmp, "work")
            home.mkdir()
            cwd.mkdir()
            env = mock_cli_env(base_url, home)
            asyncio.run(main(args.slots, args.modes, args.rounds, env, cwd))
    finally:
        mock.terminate()
        mock.wait(10)
