"""``claude-pool demo``: a pool of real Claude Code slots working through a small batch.

The demo writes a tiny Python project into a temporary directory and runs three kinds of work
on it, with live progress: a fan-out (three code reviews side by side), a two-step chain run by
``Pool.chain`` (find a bug, then write the commit message for its fix: the second prompt gets
the first step's output as ``{previous_output}``), and a task through the review gate (write
``NOTES.md``; the demo rejects the first attempt with feedback and approves the second). Then
it prints the results, the spend against the budget and the pool's session metrics.

With ``ANTHROPIC_API_KEY`` set it runs on the real API (a cheap model, a small budget).
Without one, the slots are still real Claude Code CLI processes, but they talk to the built-in
:class:`~claude_pool.testing.mock_api.MockAnthropicAPI`, started in this process with scripted
replies (tool calls included: the CLI really reads the files and really writes ``NOTES.md``),
an isolated HOME, and simulated token usage that the CLI prices as it would real usage.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.live import Live
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from claude_pool.chain import ChainIsolation, ChainSpec, ChainStep
from claude_pool.config import Settings
from claude_pool.doctor import INSTALLED_BY, locate_claude, real_api_configured
from claude_pool.events import (
    Event,
    SpendRecorded,
    TaskCancelled,
    TaskClaimed,
    TaskFinished,
    TaskHeldForReview,
    TaskProgress,
    TaskQueued,
    TaskStarted,
    describe,
    preview,
    task_state_after,
)
from claude_pool.executor.locate import claude_version, find_claude, install_dir
from claude_pool.pool import Pool
from claude_pool.testing.claude_cli import mock_cli_env
from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    MockAnthropicAPI,
    MockRequest,
    Reply,
    Usage,
    read,
    text,
    write,
)
from claude_pool.types import (
    PermissionMode,
    PoolConfig,
    SessionMetrics,
    TaskOverrides,
    TaskRecord,
    TaskResult,
    TaskState,
    microdollars_to_usd,
)

__all__ = ["DemoOptions", "run_demo"]

REAL_MODEL = "claude-haiku-4-5"
"""The model the demo uses on the real API unless told otherwise: cheap and quick."""

_MOCK_TIMEOUT_SECS = 120.0
_REAL_TIMEOUT_SECS = 900.0
_REAL_TASK_TIMEOUT_SECS = 300.0
_STEP_TAG = "chain-step:"
"""Tag of the tasks that run chain steps (``chain-step:<step name>``)."""


@dataclass
class DemoOptions:
    mock: bool | None = None
    """True: the built-in mock API; False: the real API; None: real iff a key is set."""
    slots: int = 3
    budget_usd: float = 1.0
    model: str | None = None
    """Model on the real API (default :data:`REAL_MODEL`); the mock always prices as
    :data:`~claude_pool.testing.mock_api.DEFAULT_MODEL`."""
    keep_project: bool = False


# ── the project the slots work on ───────────────────────────────────

PROJECT_FILES = {
    "inventory.py": '''\
"""Stock levels for a small shop."""


def add_item(stock, name, qty, log=[]):
    log.append((name, qty))
    stock[name] = stock.get(name, 0) + qty
    return log


def remove_item(stock, name, qty):
    if stock[name] - qty < 0:
        raise ValueError(f"not enough {name}")
    stock[name] -= qty


def low_stock(stock, threshold=5):
    return [name for name, qty in stock.items() if qty < threshold]
''',
    "pricing.py": '''\
"""Prices and bills."""


def total(prices, discount_percent=0):
    subtotal = sum(prices)
    return round(subtotal - subtotal * discount_percent / 100, 2)


def split_bill(amount, people):
    share = amount / people
    return [round(share, 2)] * people
''',
    "report.py": '''\
"""A plain-text stock report."""

from inventory import low_stock


def render(stock):
    lines = ["Item        Qty"]
    for name, qty in sorted(stock.items()):
        lines.append(f"{name:<12}{qty}")
    missing = low_stock(stock)
    if missing:
        lines.append("Reorder: " + ", ".join(missing))
    return "\\n".join(lines)
''',
}

REVIEW_PROMPT = (
    "Review {file} in the current directory for bugs and risky code. Answer with at most "
    "three short bullet points, most serious first."
)
CHAIN_STEPS = (
    "Read inventory.py in the current directory and name its most serious bug in one sentence.",
    "A reviewer reported this bug:\n\n{previous_output}\n\nWrite a commit message for its fix: "
    "a subject line under 60 characters, a blank line, and two sentences. Reply with the "
    "message only.",
)
NOTES_PROMPT = (
    "Write NOTES.md in the current directory: a maintainer's note of at most eight lines on "
    "inventory.py, pricing.py and report.py, naming the most important fix each needs. Use the "
    "Write tool, then reply with one line saying what you wrote."
)
REVIEW_FEEDBACK = "Add a last line starting with 'Next steps:' that says which fix to do first."


def write_project(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in PROJECT_FILES.items():
        (directory / name).write_text(content, encoding="utf-8")
    return directory


# ── the mock's script: what a model might plausibly answer ──────────

_TOOL_TURN = Usage(input_tokens=2400, output_tokens=90, cache_read_input_tokens=14_000)
_ANSWER_TURN = Usage(input_tokens=3100, output_tokens=260, cache_read_input_tokens=14_000)

_REVIEWS = {
    "inventory.py": (
        "- `add_item` has a mutable default `log=[]`: every call without a log appends to the "
        "same shared list, so history leaks between callers. Default to `None`.\n"
        "- `remove_item` raises `KeyError` for an unknown item instead of the `ValueError` the "
        "caller expects; use `stock.get(name, 0)`.\n"
        "- Negative quantities are accepted by `add_item` and silently reduce stock."
    ),
    "pricing.py": (
        "- `split_bill` loses cents: `split_bill(10, 3)` returns three 3.33s, which sum to "
        "9.99. Give the remainder to the first share.\n"
        "- `split_bill(amount, 0)` raises `ZeroDivisionError`; validate `people`.\n"
        "- Money as floats rounds unpredictably; prefer `Decimal` or integer cents."
    ),
    "report.py": (
        "- Names longer than 12 characters break the column alignment (`{name:<12}` does not "
        "truncate).\n"
        "- `from inventory import low_stock` only works when run from this directory; use a "
        "package-relative import.\n"
        "- No bugs in the reorder line itself."
    ),
}
_BUG = (
    "`add_item` uses a mutable default argument (`log=[]`), so every call that omits `log` "
    "appends to one shared list and the history leaks between callers."
)
_COMMIT = (
    "Fix shared mutable default in add_item\n\n"
    "add_item(log=[]) reused a single list across calls, so unrelated callers saw each "
    "other's history. It now defaults to None and starts a new list per call."
)
_NOTES_V1 = """\
# Maintainer notes

- inventory.py: `add_item` shares one `log` list across calls (mutable default); use None.
- inventory.py: `remove_item` raises KeyError for unknown items; use `stock.get`.
- pricing.py: `split_bill` drops cents (10 / 3 -> 9.99 in total) and divides by zero.
- report.py: names over 12 characters break the column alignment.
"""
_NOTES_V2 = _NOTES_V1 + "Next steps: fix the mutable default in `add_item` first.\n"


def _commit_message(request: MockRequest) -> Reply:
    # Answer from what the chain actually put into the prompt: without the first step's
    # output there is nothing to write a commit message about.
    if "mutable default" not in request.prompt:
        return Reply("I need the bug report to write a commit message.", usage=_ANSWER_TURN)
    return Reply(_COMMIT, usage=_ANSWER_TURN, chunk_delay=0.02)


def script_mock(api: MockAnthropicAPI, project: Path) -> None:
    """Teach the mock its lines: each task reads or writes real files through the CLI's tools,
    then answers."""

    def reading(file: str, intro: str) -> Reply:
        return Reply([text(intro), read(project / file)], usage=_TOOL_TURN, delay=0.3)

    def answer(value: str, delay: float = 0.2) -> Reply:
        return Reply(value, usage=_ANSWER_TURN, delay=delay, chunk_delay=0.02)

    for number, (file, review) in enumerate(_REVIEWS.items()):
        prompt = REVIEW_PROMPT.format(file=file)
        api.on(answer(review, delay=0.4 + 0.3 * number), prompt=prompt, tool_result=True)
        api.on(reading(file, f"I'll read {file} first."), prompt=prompt)
    api.on(answer(_BUG), prompt=CHAIN_STEPS[0], tool_result=True)
    api.on(reading("inventory.py", "Let me look at inventory.py."), prompt=CHAIN_STEPS[0])
    api.on(_commit_message, prompt="Write a commit message for its fix")
    # The second attempt's prompt is the first one plus the reviewer's feedback. The CLI's Write
    # tool refuses to overwrite a file the session has not read, so it reads NOTES.md first.
    rejected = "A reviewer rejected your previous result"

    def revise(request: MockRequest) -> Reply:
        if _last_tool(request) == "Read":
            return Reply(
                [text("Adding the next steps."), write(project / "NOTES.md", _NOTES_V2)],
                usage=_TOOL_TURN,
                delay=0.3,
            )
        return answer("Rewrote NOTES.md with a 'Next steps' line.")

    api.on(revise, prompt=rejected, tool_result=True)
    api.on(
        Reply(
            [text("I'll re-read NOTES.md and add the next steps."), read(project / "NOTES.md")],
            usage=_TOOL_TURN,
            delay=0.3,
        ),
        prompt=rejected,
    )
    api.on(
        answer("Wrote NOTES.md: four lines, one fix per finding."),
        prompt=NOTES_PROMPT,
        tool_result=True,
    )
    api.on(
        Reply(
            [text("Let me write the note."), write(project / "NOTES.md", _NOTES_V1)],
            usage=_TOOL_TURN,
            delay=0.3,
        ),
        prompt=NOTES_PROMPT,
    )


def _last_tool(request: MockRequest) -> str | None:
    """The name of the last tool the model called in this conversation."""
    for message in reversed(request.messages):
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, list):
            calls = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_use"]
            if calls:
                return str(calls[-1].get("name"))
    return None


def _mock_slot_env(base_url: str, home: Path) -> dict[str, str]:
    """Variables to add to the slots' environment so they talk to the mock.

    The slots inherit this process's environment, so the Anthropic and Claude Code variables
    the mock environment leaves out are blanked (the CLI treats empty as unset).
    """
    env = mock_cli_env(base_url, home, parent={})
    for name in os.environ:
        if name.startswith(("ANTHROPIC_", "CLAUDE_CODE_")) and name not in env:
            env[name] = ""
    if "XDG_CONFIG_HOME" in os.environ:
        env["XDG_CONFIG_HOME"] = str(home / ".config")
    return env


# ── live progress ───────────────────────────────────────────────────


@dataclass
class _Row:
    label: str
    slot_id: str | None = None
    state: TaskState = TaskState.PENDING
    cost: int = 0
    activity: str = ""


@dataclass
class _Progress:
    """What the live table shows: every task of the pool with its latest activity, kept up to
    date from the pool's events (nothing is read back from the store)."""

    pool: Pool
    labels: dict[str, str] = field(default_factory=dict)
    """Preview of a task's prompt (the original one, for reviewed tasks) → short label."""
    rows: dict[str, _Row] = field(default_factory=dict)
    spend: int = 0

    def on_event(self, event: Event) -> None:
        # Replaced whole: rich renders the table from its refresh thread.
        rows = dict(self.rows)
        if isinstance(event, TaskQueued):
            step = next((t for t in event.tags if t.startswith(_STEP_TAG)), None)
            if step is not None:
                label = f"chain · {step.removeprefix(_STEP_TAG)}"
            else:
                label = self.labels.get(event.prompt, event.prompt[:40])
            rows[event.task_id] = _Row(label)
        elif isinstance(event, SpendRecorded):
            self.spend += event.microdollars
        if event.task_id is None or event.task_id not in rows:
            self.rows = rows
            return
        row = rows[event.task_id] = replace(rows[event.task_id])
        state = task_state_after(event)
        if state is not None:
            row.state = state
        if isinstance(event, TaskClaimed):
            row.slot_id = event.slot_id
            row.state = TaskState.RUNNING
        elif isinstance(event, TaskFinished | TaskCancelled | TaskHeldForReview):
            row.cost = event.cost_microdollars
        if isinstance(event, TaskProgress | TaskStarted):
            row.activity = describe(event, subject=False)
        self.rows = rows

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> Iterator[RenderableType]:
        budget = self.pool.config.budget_microdollars
        cap = f" of ${microdollars_to_usd(budget):.2f}" if budget is not None else ""
        table = Table(
            title=f"{len(self.pool.slots)} slots · spent ${microdollars_to_usd(self.spend):.4f}"
            f"{cap}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        # Fixed widths (padding included): rich would otherwise squeeze the short columns away
        # on a narrow screen.
        widths = {"task": 26, "slot": 8, "state": 16, "cost $": 8}
        for name, width in widths.items():
            table.add_column(name, width=width, no_wrap=True, overflow="ellipsis")
        rest = options.max_width - sum(widths.values()) - 1
        table.add_column("latest", width=max(8, rest), no_wrap=True, overflow="ellipsis")
        for row in self.rows.values():
            style = _STATE_STYLE.get(row.state, "")
            table.add_row(
                row.label,
                _short_slot(row.slot_id),
                Text(str(row.state), style=style),
                f"{microdollars_to_usd(row.cost):.4f}" if row.cost else "",
                Text(row.activity),
            )
        yield table


_STATE_STYLE = {
    TaskState.PENDING: "dim",
    TaskState.RUNNING: "cyan",
    TaskState.PENDING_REVIEW: "magenta",
    TaskState.COMPLETED: "green",
    TaskState.FAILED: "red",
    TaskState.CANCELLED: "yellow",
}


def _short_slot(slot_id: str | None) -> str:
    if slot_id is None:
        return "-"
    return slot_id.removeprefix("slot-")[:6]


# ── the run ─────────────────────────────────────────────────────────


@dataclass
class _Outcome:
    results: list[tuple[str, TaskResult]] = field(default_factory=list)
    notes: str | None = None
    chain_mode: str = ""

    @property
    def ok(self) -> bool:
        return all(result.success for _, result in self.results)


async def run_demo(options: DemoOptions, console: Console) -> int:
    """Run the demo, printing to ``console``; returns the exit code (0: every task succeeded)."""
    use_mock = options.mock if options.mock is not None else not real_api_configured()
    claude, how = _demo_claude()
    if claude is None:
        console.print(
            "[bold red]error:[/] no Claude Code CLI found (looked at CLAUDE_POOL_CLAUDE_BIN, "
            f"PATH and {install_dir()}); run `claude-pool install-cli`, then try again "
            "(`claude-pool doctor` checks the rest)",
            highlight=False,
        )
        return 2
    version = await asyncio.to_thread(claude_version, claude) or "unknown version"
    started = time.monotonic()
    workspace = Path(tempfile.mkdtemp(prefix="claude-pool-demo-"))
    try:
        project = write_project(workspace / "project")
        if use_mock:
            console.print(
                "[bold]claude-pool demo[/] · [yellow]mock API[/]: no ANTHROPIC_API_KEY, so the "
                "slots (real Claude Code processes) talk to the built-in mock of the Anthropic "
                "API: scripted replies, simulated spend. Set ANTHROPIC_API_KEY for the real thing."
            )
        else:
            console.print(
                "[bold]claude-pool demo[/] · [green]real API[/] (ANTHROPIC_API_KEY is set): "
                f"this spends real money, with a budget of ${options.budget_usd:.2f}."
            )
        async with _api(use_mock, project, workspace / "home") as env:
            model = DEFAULT_MODEL if use_mock else (options.model or REAL_MODEL)
            console.print(
                f"project {project} ({', '.join(PROJECT_FILES)}) · {options.slots} slots · "
                f"model {model} · budget ${options.budget_usd:.2f} · claude {version} "
                f"({how})",
                highlight=False,
            )
            settings = Settings(
                pool=PoolConfig(
                    model=model,
                    budget_microdollars=round(options.budget_usd * 1_000_000),
                    permission_mode=PermissionMode.PLAN,
                    max_turns=8,
                ),
                slots=options.slots,
                store=":memory:",
                claude_bin=str(claude),
                env=env,
                cwd=str(project),
                task_timeout_secs=_MOCK_TIMEOUT_SECS if use_mock else _REAL_TASK_TIMEOUT_SECS,
            )
            limit = _MOCK_TIMEOUT_SECS if use_mock else _REAL_TIMEOUT_SECS
            async with Pool(settings=settings) as pool:
                try:
                    async with asyncio.timeout(limit):
                        outcome = await _work(pool, project, console)
                except TimeoutError:
                    console.print(f"[bold red]error:[/] the demo did not finish in {limit:.0f} s")
                    return 1
                status = await pool.status()
                metrics = await pool.session_metrics()
        _summary(console, outcome, status.spend_microdollars, options, metrics, use_mock)
    finally:
        if options.keep_project:
            console.print(f"kept the project at {workspace / 'project'}", highlight=False)
        else:
            shutil.rmtree(workspace, ignore_errors=True)
    elapsed = time.monotonic() - started
    verdict = (
        "[bold green]every task succeeded[/]" if outcome.ok else "[bold red]some tasks failed[/]"
    )
    console.print(f"demo finished in {elapsed:.1f} s: {verdict}")
    return 0 if outcome.ok else 1


def _demo_claude() -> tuple[Path | None, str]:
    """The CLI the demo's slots run: as a pool finds it, except that a ``claude`` on PATH
    other than the pinned version gives way to the copy ``claude-pool install-cli`` installs
    (the mock's script was written against the pinned version)."""
    explicit = os.environ.get("CLAUDE_POOL_CLAUDE_BIN")
    if not explicit:
        pinned = find_claude()
        if pinned is not None:
            on_path = shutil.which("claude")
            same = on_path is not None and Path(on_path) == pinned
            return pinned, "PATH" if same else INSTALLED_BY
    return locate_claude(explicit)


@asynccontextmanager
async def _api(use_mock: bool, project: Path, home: Path) -> AsyncIterator[dict[str, str]]:
    """The slots' extra environment, with the mock API running while inside (mock mode)."""
    if not use_mock:
        yield {}
        return
    _make_dir(home)
    async with MockAnthropicAPI() as api:
        script_mock(api, project)
        yield _mock_slot_env(api.base_url, home)


async def _work(pool: Pool, project: Path, console: Console) -> _Outcome:
    outcome = _Outcome()
    progress = _Progress(pool)
    progress.labels.update(
        {preview(REVIEW_PROMPT.format(file=f)): f"review {f}" for f in PROJECT_FILES}
        | {preview(NOTES_PROMPT): "NOTES.md (review gate)"}
    )
    remove = pool.add_listener(progress.on_event)
    try:
        with Live(progress, console=console, refresh_per_second=8, transient=False):
            await _fan_out(pool, console, outcome)
            await _chain(pool, console, outcome)
            await _review_gate(pool, project, console, outcome)
        if not console.is_terminal:
            console.line()  # rich ends the final table of a non-terminal Live without one
    finally:
        remove()
    return outcome


async def _fan_out(pool: Pool, console: Console, outcome: _Outcome) -> None:
    console.rule("[bold]1/3 fan-out[/]: three reviews side by side (Pool.fan_out)")
    files = list(PROJECT_FILES)
    results = await pool.fan_out([REVIEW_PROMPT.format(file=f) for f in files])
    for file, result in zip(files, results, strict=True):
        _show(console, f"review {file}", result)
        outcome.results.append((f"review {file}", result))


async def _chain(pool: Pool, console: Console, outcome: _Outcome) -> None:
    console.rule("[bold]2/3 chain[/]: find a bug, then write the commit message for its fix")
    # No worktree: the demo's project is not a git repository, so the steps run in it.
    spec = ChainSpec(
        name="bug-to-commit",
        steps=[
            ChainStep(name="find-bug", prompt=CHAIN_STEPS[0]),
            ChainStep(name="commit-message", prompt=CHAIN_STEPS[1]),
        ],
        isolation=ChainIsolation.NONE,
    )
    chain = await pool.chain(spec)
    for step in chain.steps:
        label = f"chain · {step.name}"
        task_ids = [a.task_id for a in step.attempts if a.task_id is not None]
        if task_ids:
            result = _result_of(await pool.get_task(task_ids[-1]))
        else:
            result = TaskResult.failure(step.error or f"the step was {step.state}")
        _show(console, label, result)
        outcome.results.append((label, result))
    if not chain.success:
        outcome.results.append(("chain", TaskResult.failure(chain.error or str(chain.state))))
    cost = microdollars_to_usd(chain.total_cost_microdollars)
    outcome.chain_mode = (
        f"Pool.chain ran {len(chain.steps)} steps ({chain.state}, ${cost:.4f}); step 2's prompt "
        "had step 1's output in place of {previous_output}"
    )


async def _review_gate(pool: Pool, project: Path, console: Console, outcome: _Outcome) -> None:
    console.rule("[bold]3/3 review gate[/]: write NOTES.md, reject once with feedback, approve")
    edits = TaskOverrides(permission_mode=PermissionMode.ACCEPT_EDITS)
    task_id = await pool.submit(NOTES_PROMPT, edits, ["notes"], review=True)
    record = await pool.wait(task_id)
    notes = project / "NOTES.md"
    if record.state is not TaskState.PENDING_REVIEW:
        _show(console, "write NOTES.md", _result_of(record))
        outcome.results.append(("write NOTES.md", _result_of(record)))
        return
    _show(console, "attempt 1 (held for review)", _result_of(record))
    written = _read(notes)
    on_disk = f"{len(written.splitlines())} line(s)" if written is not None else "not written"
    console.print(f"  NOTES.md on disk: {on_disk} · rejecting with feedback:", highlight=False)
    console.print(f"  [italic]{REVIEW_FEEDBACK}[/]", highlight=False)
    rejected = await pool.reject(task_id, REVIEW_FEEDBACK)
    if not rejected.requeued:
        outcome.results.append(("write NOTES.md", _result_of(rejected.task)))
        return
    record = await pool.wait(task_id)
    _show(console, f"attempt {rejected.attempt} (held for review)", _result_of(record))
    if record.state is TaskState.PENDING_REVIEW:
        record = await pool.approve(task_id)
        console.print("  [green]approved[/]: the task is completed")
    outcome.results.append(("write NOTES.md (reviewed)", _result_of(record)))
    outcome.notes = _read(notes)
    if outcome.notes is None or "Next steps:" not in outcome.notes:
        console.print("  [yellow]note:[/] the approved NOTES.md lacks the requested last line")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _result_of(record: TaskRecord) -> TaskResult:
    return record.result or TaskResult.failure(f"the task ended {record.state} without a result")


def _show(console: Console, label: str, result: TaskResult) -> None:
    mark = "[green]✓[/]" if result.success else "[red]✗[/]"
    cost = microdollars_to_usd(result.cost_microdollars)
    turns = f"{result.turns_used} turn{'' if result.turns_used == 1 else 's'}"
    console.print(
        f"{mark} [bold]{label}[/] [dim](${cost:.4f}, {turns}, {result.elapsed_ms / 1000:.1f} s)[/]",
        highlight=False,
    )
    console.print(_indented(result.output.strip() or "(no output)"))


def _indented(body: str, max_lines: int = 12) -> Padding:
    lines = body.splitlines()
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"… {len(lines) - max_lines} more line(s)"]
    return Padding(Text("\n".join(lines)), (0, 0, 0, 4))


def _summary(
    console: Console,
    outcome: _Outcome,
    spend: int,
    options: DemoOptions,
    metrics: SessionMetrics,
    use_mock: bool,
) -> None:
    console.rule("[bold]results[/]")
    if outcome.notes is not None:
        console.print("NOTES.md, as written by a slot and approved:")
        console.print(_indented(outcome.notes.strip()))
    if outcome.chain_mode:
        console.print(f"chain: {outcome.chain_mode}", highlight=False)
    budget = options.budget_usd
    spent = microdollars_to_usd(spend)
    note = " (simulated: the mock reports token usage, the CLI prices it)" if use_mock else ""
    console.print(
        f"spend: ${spent:.4f} of the ${budget:.2f} budget ({spent / budget:.0%}){note}",
        highlight=False,
    )
    console.print(_metrics_table(metrics))


def _metrics_table(metrics: SessionMetrics) -> Group:
    table = Table(title="session_metrics", title_justify="left")
    for name in ("tasks", "completed", "failed", "avg cost $", "median s", "max s", "avg turns"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_row(
        str(metrics.total_tasks),
        str(metrics.completed_tasks),
        str(metrics.failed_tasks),
        f"{microdollars_to_usd(metrics.avg_cost_microdollars):.4f}",
        f"{metrics.median_elapsed_ms / 1000:.1f}",
        f"{metrics.max_elapsed_ms / 1000:.1f}",
        f"{metrics.avg_turns:.1f}",
    )
    by_model = ", ".join(f"{model}: {n}" for model, n in sorted(metrics.tasks_by_model.items()))
    return Group(table, Text(f"tasks by model: {by_model or '-'}"))
