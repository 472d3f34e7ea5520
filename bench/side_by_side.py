"""Scheduler throughput of this tree against an earlier commit, both running at the same time.

This shared 2-core machine's speed drifts by 20% within an hour, so two runs one after the
other compare the machine as much as the code (back-to-back rounds disagreed by up to 25%).
Here each round starts the scheduler benchmark's throughput run (fake executor, SQLite,
tasks submitted one after another) for both trees at once, one process each, so that both
see the same machine; the ratio of each round is what to read (in an A/A run the rounds'
ratios stayed within 0.94-1.04 and their median within 3% of 1).

    .venv/bin/python bench/side_by_side.py [--against HEAD~1] [--rounds 5] [--tasks 5000]
        [--slots 4 16]

The earlier commit is checked out in a temporary git worktree (removed afterwards) and
imported from there; this tree's own ``src`` runs the other side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_RUN = """
import asyncio, json, resource, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from scheduler_bench import throughput
from claude_pool.store.sqlite import SqliteStore
tasks, slots = int(sys.argv[2]), int(sys.argv[3])
with tempfile.TemporaryDirectory() as tmp:
    before = resource.getrusage(resource.RUSAGE_SELF)
    figures = asyncio.run(throughput(SqliteStore(Path(tmp) / "tp.db"), tasks, slots))
    after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
print(json.dumps({"tasks_per_sec": figures["tasks_per_sec"], "cpu_us_per_task": cpu / tasks * 1e6}))
"""


def _start(src: Path, tasks: int, slots: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    argv = [sys.executable, "-c", _RUN, str(ROOT / "bench"), str(tasks), str(slots)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = process.communicate(timeout=600)
    if process.returncode != 0:
        raise SystemExit(f"a benchmark run failed (exit {process.returncode})")
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


def compare(old_src: Path, rounds: int, tasks: int, slots: int) -> None:
    old: list[dict[str, float]] = []
    new: list[dict[str, float]] = []
    for _ in range(rounds):
        runs = (_start(old_src, tasks, slots), _start(ROOT / "src", tasks, slots))
        old.append(_result(runs[0]))
        new.append(_result(runs[1]))
    ratios = [n["tasks_per_sec"] / o["tasks_per_sec"] for o, n in zip(old, new, strict=True)]

    def rates(side: list[dict[str, float]]) -> str:
        return ", ".join(f"{r['tasks_per_sec']:,.0f}" for r in side)

    def cpu(side: list[dict[str, float]]) -> float:
        return statistics.median(r["cpu_us_per_task"] for r in side)

    print(f"sqlite, {slots} slots, {tasks} tasks:")
    print(f"  earlier  tasks/s {rates(old)}  (CPU {cpu(old):,.0f} us/task)")
    print(f"  this     tasks/s {rates(new)}  (CPU {cpu(new):,.0f} us/task)")
    print(
        f"  this/earlier per round {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {statistics.median(ratios):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", default="HEAD~1", help="the earlier commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--slots", type=int, nargs="+", default=[4, 16])
    args = parser.parse_args()
    git = ["git", "-C", str(ROOT)]
    rev = subprocess.run(
        [*git, "rev-parse", "--verify", "--quiet", f"{args.against}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if rev.returncode != 0:
        print(f"no commit {args.against!r} in this repository; nothing to compare against")
        return
    commit = rev.stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "earlier"
        subprocess.run(
            [*git, "worktree", "add", "--detach", "--quiet", str(tree), commit], check=True
        )
        try:
            print(f"this tree against {args.against} ({commit[:10]}), both at once per round")
            for slots in args.slots:
                compare(tree / "src", args.rounds, args.tasks, slots)
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=False)


if __name__ == "__main__":
    main()
