"""The same trivial tasks five ways, side by side: persistent slots, the same persistent
slots already running (``warm``: each slot did one task before the clock starts, as a long-lived
MCP server's or worker's slots have), ephemeral slots, fresh-session tasks on persistent slots,
and bare ``claude -p`` runs, 4 at a time.

All run the real Claude Code CLI against the project's mock Anthropic API (served by a
separate process, so that its CPU is nobody's). Rounds are interleaved (each round runs every
variant once, in the same order), and each figure is the median over the rounds. For each
variant it prints the wall time of the whole batch (pool open to close, process starts
included; for ``warm`` from the end of the warm-up) and the CPU per task of the whole process
tree: this process plus every CLI process (and what they started), from ``getrusage``
(children count once reaped, which the pool's close and the bare runs' ends guarantee; so
``warm`` still counts its processes' starts).

Goals (issue 16): an ephemeral or fresh-session task costs at most 0.3x the CPU of a bare
``claude -p`` and its batch's wall time is within 2x of persistent slots'; persistent slots are
at least 10x faster than bare spawns in wall time. ``--variants`` adds ``respawn`` (ephemeral
slots with ``clear_for_fresh_sessions`` off: a new process per task, as before /clear).

    .venv/bin/python bench/peers.py [--tasks 40] [--slots 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from claude_pool import Pool, PoolConfig, Settings, SlotMode, TaskResult
from claude_pool.executor import ClaudeCliExecutor
from claude_pool.store import MemoryStore
from claude_pool.testing.claude_cli import ensure_claude, mock_cli_env
from claude_pool.testing.mock_api import DEFAULT_MODEL

VARIANTS = ("persistent", "warm", "ephemeral", "fresh", "bare")
OPTIONAL = ("respawn",)


@dataclass(frozen=True)
class Setup:
    claude_bin: Path
    env: dict[str, str]
    cwd: Path
    tasks: int
    slots: int


class Clock:
    """Where a batch's measured window starts: at the runner's call, or later (``restart``)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.cpu, self.wall = cpu_seconds(), time.perf_counter()


def cpu_seconds() -> float:
    """CPU used so far by this process and its reaped descendants."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def prompts(setup: Setup, variant: str) -> list[str]:
    return [f"{variant}: trivial task {n}" for n in range(setup.tasks)]


async def through_pool(
    setup: Setup,
    variant: str,
    clock: Clock,
    mode: SlotMode,
    *,
    fresh: bool,
    clear: bool = True,
    warm: bool = False,
) -> list[TaskResult]:
    executor = ClaudeCliExecutor(setup.claude_bin, env=setup.env, clear_for_fresh_sessions=clear)
    config = PoolConfig(model=DEFAULT_MODEL, slot_mode=mode)
    settings = Settings(store=":memory:", clear_for_fresh_sessions=clear)
    async with Pool(
        config,
        slots=setup.slots,
        store=MemoryStore(),
        executor=executor,
        settings=settings,
        cwd=setup.cwd,
    ) as pool:
        if warm:
            # A pool that is already running: every slot has done a task before the clock
            # starts (an MCP server's or a worker's slots, say).
            ids = [await pool.submit("warm up", slot=slot.id) for slot in pool.slots]
            for task_id in ids:
                await pool.wait(task_id, timeout=600)
            clock.restart()
        if not fresh:
            return await pool.fan_out(prompts(setup, variant))
        ids = [await pool.submit(p, fresh_session=True) for p in prompts(setup, variant)]
        results = []
        for task_id in ids:
            record = await pool.wait(task_id, timeout=600)
            assert record.result is not None, record
            results.append(record.result)
        return results


async def bare(setup: Setup, variant: str, clock: Clock) -> list[TaskResult]:
    gate = asyncio.Semaphore(setup.slots)

    async def one(prompt: str) -> TaskResult:
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                str(setup.claude_bin),
                "-p",
                "--model",
                DEFAULT_MODEL,
                "--output-format",
                "json",
                "--",
                prompt,
                cwd=setup.cwd,
                env=setup.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await proc.communicate()
        if proc.returncode != 0:
            return TaskResult.failure(f"exit {proc.returncode}: {err.decode()[-500:]}")
        return TaskResult.success_result(out.decode(), 0, 1)

    return await asyncio.gather(*(one(p) for p in prompts(setup, variant)))


RUNNERS: dict[str, Callable[[Setup, str, Clock], Awaitable[list[TaskResult]]]] = {
    "persistent": lambda s, v, c: through_pool(s, v, c, SlotMode.PERSISTENT, fresh=False),
    "warm": lambda s, v, c: through_pool(s, v, c, SlotMode.PERSISTENT, fresh=False, warm=True),
    "ephemeral": lambda s, v, c: through_pool(s, v, c, SlotMode.EPHEMERAL, fresh=False),
    "fresh": lambda s, v, c: through_pool(s, v, c, SlotMode.PERSISTENT, fresh=True),
    "bare": bare,
    "respawn": lambda s, v, c: through_pool(s, v, c, SlotMode.EPHEMERAL, fresh=False, clear=False),
}


async def measure(setup: Setup, variant: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds per task) of one batch."""
    clock = Clock()
    results = await RUNNERS[variant](setup, variant, clock)
    wall, cpu = time.perf_counter() - clock.wall, cpu_seconds() - clock.cpu
    failed = [r for r in results if not r.success]
    if failed:
        sys.exit(f"{variant}: {len(failed)} task(s) failed, e.g. {failed[0].output[:500]}")
    return wall, cpu / setup.tasks


def start_mock() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_pool.testing.mock_api"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    if not base_url.startswith("http"):
        proc.kill()
        sys.exit(f"the mock API did not start (printed {base_url!r})")
    return proc, base_url


def report(
    figures: dict[str, list[tuple[float, float]]], rounds: int, tasks: int, slots: int
) -> None:
    med = {
        v: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for v, runs in figures.items()
    }
    print(f"\nmedian of {rounds} interleaved round(s):")
    print(f"{'variant':>12} | {'wall':>8} | {'CPU per task':>12} | rounds (wall s)")
    for variant, (wall, cpu) in med.items():
        each = " ".join(f"{w:.1f}" for w, _ in figures[variant])
        print(f"{variant:>12} | {wall:7.1f}s | {cpu * 1000:9.0f} ms | {each}")
    if "bare" not in med or "persistent" not in med:
        return
    bare_wall, bare_cpu = med["bare"]
    persistent_wall, _ = med["persistent"]
    print("\nratios (goal):")
    for variant in ("ephemeral", "fresh", "respawn"):
        if variant in med:
            wall, cpu = med[variant]
            print(
                f"{variant:>12}: CPU {cpu / bare_cpu:5.2f}x bare (goal <= 0.3), "
                f"wall {wall / persistent_wall:5.2f}x persistent (goal <= 2)"
            )
    print(f"{'persistent':>12}: {bare_wall / persistent_wall:5.1f}x faster than bare (goal >= 10)")
    if "warm" in med:
        print(
            f"{'warm':>12}: {bare_wall / med['warm'][0]:5.1f}x faster than bare (slots already "
            "running: their starts outside the measured window)"
        )
    print_floor(med["persistent"][1], bare_cpu, bare_wall, tasks, slots)


def print_floor(
    persistent_cpu: float, bare_cpu: float, bare_wall: float, tasks: int, slots: int
) -> None:
    """What the machine allows: a bare run costs one CLI start S plus one turn T of CPU; the
    persistent batch costs ``slots`` starts plus ``tasks`` turns. Solved for S and T, the
    persistent batch cannot take less wall time than its CPU over the cores (all of it is the
    CLI's but a few ms per task), which bounds the ratio to bare runs on this machine."""
    cores = os.cpu_count() or 1
    if tasks <= slots:
        return
    turn = (persistent_cpu * tasks - slots * bare_cpu) / (tasks - slots)
    start = bare_cpu - turn
    floor = persistent_cpu * tasks / cores
    print(
        f"\nCLI cost here: a start {start * 1000:.0f} ms CPU, a warm turn {turn * 1000:.0f} ms; "
        f"the persistent batch ({slots} starts + {tasks} turns) needs >= {floor:.1f} s on {cores} "
        f"core(s), so at most {bare_wall / floor:.1f}x faster than bare runs on this machine"
    )


async def main(setup: Setup, variants: list[str], rounds: int) -> None:
    figures: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for round_ in range(1, rounds + 1):
        for variant in variants:
            wall, cpu = await measure(setup, variant)
            figures[variant].append((wall, cpu))
            print(
                f"round {round_}: {variant:>10}  wall {wall:6.1f}s  CPU/task {cpu * 1000:6.0f} ms",
                flush=True,
            )
    report(figures, rounds, setup.tasks, setup.slots)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS + OPTIONAL, default=list(VARIANTS)
    )
    args = parser.parse_args()
    claude_bin = ensure_claude()
    mock, base_url = start_mock()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home, cwd = Path(tmp, "home"), Path(tmp, "work")
            home.mkdir()
            cwd.mkdir()
            setup = Setup(claude_bin, mock_cli_env(base_url, home), cwd, args.tasks, args.slots)
            print(
                f"{args.tasks} trivial tasks, {args.slots} at a time, against the mock API; "
                f"{os.cpu_count()} CPU(s); Claude Code CLI at {claude_bin}"
            )
            asyncio.run(main(setup, args.variants, args.rounds))
    finally:
        mock.terminate()
        mock.wait(10)
