"""The dashboard in a real headless Chromium (Debian's), live from the event stream."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_pool import Pool, PoolConfig, TaskResult
from claude_pool.executor.base import EventKind, ExecutionRequest
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.testing.web import LiveFace, serve_in_thread

CHROMIUM = os.environ.get("CLAUDE_POOL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WAIT_MS = 15_000


def _browser_or_skip() -> Any:
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium; `make pytest` does)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the dashboard's browser test cannot run in CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


def answer(request: ExecutionRequest) -> TaskResult:
    shown = request.prompt.splitlines()[0]
    feedback = "after feedback" if "shorter" in request.prompt else "first try"
    return TaskResult.success_result(
        f"Answer to {shown!r} ({feedback})", cost_microdollars=2500, turns_used=2
    ).with_model("claude-haiku-4-5")


def progress(request: ExecutionRequest) -> list[tuple[EventKind, dict[str, Any]]]:
    return [
        (EventKind.ASSISTANT_TEXT, {"text": "Reading the files first."}),
        (EventKind.TOOL_USE, {"name": "Read", "input": {"file_path": "README.md"}, "id": "t1"}),
    ]


@pytest.fixture
def executor() -> FakeExecutor:
    return FakeExecutor(handler=answer, hold=True, events=progress)


@pytest.fixture
def live(executor: FakeExecutor) -> Iterator[LiveFace]:
    def make_pool() -> Pool:
        config = PoolConfig(budget_microdollars=1_000_000, model="claude-haiku-4-5")
        return Pool(config, slots=2, store=MemoryStore(), executor=executor)

    with serve_in_thread(make_pool) as face:
        yield face


@pytest.mark.timeout(120)
def test_the_dashboard_shows_tasks_live_and_steers_the_review_gate(
    live: LiveFace, executor: FakeExecutor
) -> None:
    sync_playwright = _browser_or_skip()
    with httpx.Client(base_url=live.url, timeout=10) as api:
        _drive(sync_playwright, live, executor, api)


def _drive(sync_playwright: Any, live: LiveFace, executor: FakeExecutor, api: httpx.Client) -> None:

    def release(task_id: str) -> None:
        async def go(pool: Pool) -> None:
            await executor.wait_running(1)
            executor.release(task_id)

        live.call(go)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(live.url + "/")
        page.wait_for_selector("#live[data-state='live']", timeout=WAIT_MS)

        # A task submitted through the API appears, runs, and finishes, live.
        task = api.post("/api/v1/tasks", json={"prompt": "Summarise the README"}).json()
        row = f"#recent tr[data-task-id='{task['id']}']"
        page.wait_for_selector(f"{row}[data-state='running']", timeout=WAIT_MS)
        slot = f"#slots li:has-text('{task['id'][5:13]}')"
        page.wait_for_selector(slot, timeout=WAIT_MS)
        # What the slot is doing right now: its latest tool call.
        page.wait_for_selector(f"{slot} .activity:has-text('Read')", timeout=WAIT_MS)
        release(task["id"])
        page.wait_for_selector(f"{row}[data-state='completed']", timeout=WAIT_MS)
        assert "$0.0025" in page.inner_text(row)

        # A verified task shows its check; a plan-first task is held as a plan to approve.
        checked = api.post(
            "/api/v1/tasks", json={"prompt": "Fix the flaky test", "verify": "true"}
        ).json()
        release(checked["id"])
        checked_row = f"#recent tr[data-task-id='{checked['id']}']"
        page.wait_for_selector(
            f"{checked_row}[data-state='completed'] .checks .pass", timeout=WAIT_MS
        )
        planned = api.post(
            "/api/v1/tasks", json={"prompt": "Add a cache to the store", "plan_first": True}
        ).json()
        release(planned["id"])
        plan_card = f"#reviews .review[data-task-id='{planned['id']}'][data-kind='plan']"
        page.wait_for_selector(plan_card, timeout=WAIT_MS)
        assert page.text_content(f"{plan_card} .kind") == "Plan to approve"
        assert "Approve: carry it out" in page.inner_text(f"{plan_card} button.approve")

        # A review task: rejected with feedback, it runs again; then approved.
        review = api.post(
            "/api/v1/tasks", json={"prompt": "Write a haiku about queues", "review": True}
        ).json()
        card = f"#reviews .review[data-task-id='{review['id']}']"
        release(review["id"])
        page.wait_for_selector(card, timeout=WAIT_MS)
        assert "first try" in page.inner_text(f"{card} pre.output")
        page.fill(f"{card} textarea", "shorter, please")
        page.click(f"{card} button.reject")
        page.wait_for_selector(
            f"#recent tr[data-task-id='{review['id']}'][data-state='running']", timeout=WAIT_MS
        )
        release(review["id"])
        page.wait_for_selector(f"{card} >> text=after feedback", timeout=WAIT_MS)
        assert "attempt 2" in page.inner_text(card)

        # Two slots busy and one task queued, for the screenshot.
        busy = [
            api.post("/api/v1/tasks", json={"prompt": prompt}).json()["id"]
            for prompt in ("Refactor the store module", "Write tests for the scheduler")
        ]
        notes = api.post(
            "/api/v1/tasks", json={"prompt": "Write the release notes", "depends_on": busy}
        ).json()
        waits = f"#queue li[data-task-id='{notes['id']}'] .waits"
        page.wait_for_selector(f"{waits}:has-text('{busy[1][5:13]}')", timeout=WAIT_MS)
        assert busy[0][5:13] in page.inner_text(waits)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-review.png"), full_page=True)

        page.click(f"{card} button.approve")
        page.wait_for_selector(
            f"#recent tr[data-task-id='{review['id']}'][data-state='completed']", timeout=WAIT_MS
        )
        assert page.locator(card).count() == 0
        page.wait_for_selector("#models td:has-text('claude-haiku-4-5')", timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        # Narrow screens: one column, nothing wider than the viewport.
        page.set_viewport_size({"width": 390, "height": 844})
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        page.screenshot(path=str(ARTIFACTS / "dashboard-narrow.png"), full_page=True)
        browser.close()
    assert errors == []


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for args in (("init", "-q", "-b", "main"), ("config", "user.name", "T"),
                 ("config", "user.email", "t@example.com")):  # fmt: skip
        subprocess.run(["git", "-C", str(root), *args], check=True)
    (root / "queue.py").write_text("def claim():\n    return None\n")
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-qm", "initial"], check=True)
    return root


def edit(request: ExecutionRequest) -> TaskResult:
    (request.cwd / "queue.py").write_text("def claim():\n    return next_task()\n")
    return TaskResult.success_result("claim() now returns the next task.", 1800, 3)


@pytest.mark.timeout(60)
def test_behind_a_token_the_dashboard_shows_chains_and_a_review_diff(repo: Path) -> None:
    sync_playwright = _browser_or_skip()

    def make_pool() -> Pool:
        config = PoolConfig(worktree_isolation=True)
        executor = FakeExecutor(handler=edit)
        return Pool(config, slots=1, store=MemoryStore(), executor=executor, cwd=repo)

    with serve_in_thread(make_pool, tokens=["d4shboard"]) as live, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(live.url + "/")
        page.wait_for_selector("#login:not([hidden])", timeout=WAIT_MS)
        assert page.locator("#board").is_hidden()
        page.fill("#token", "d4shboard")
        page.click("#login button")
        page.wait_for_selector("#live[data-state='live']", timeout=WAIT_MS)

        async def work(pool: Pool) -> str:
            spec = {"name": "fix-claim", "isolation": "none",
                    "steps": [{"name": "plan", "prompt": "plan"},
                              {"name": "implement", "prompt": "do it"}]}  # fmt: skip
            await pool.wait_chain(await pool.submit_chain(spec), timeout=10)
            task_id = await pool.submit("Make claim() return the next task", review=True)
            await pool.wait(task_id, timeout=10)
            return task_id

        task_id = live.call(work)
        page.wait_for_selector("#chains [data-chain-id] >> text=implement", timeout=WAIT_MS)
        card = f"#reviews .review[data-task-id='{task_id}']"
        page.wait_for_selector(f"{card} pre.diff >> text=return next_task()", timeout=WAIT_MS)
        assert "-    return None" in page.inner_text(f"{card} pre.diff")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-diff.png"), full_page=True)
        # The token can come in the address's fragment too (never sent to the server).
        fresh = browser.new_page()
        fresh.goto(live.url + "/#token=d4shboard")
        fresh.wait_for_selector("#live[data-state='live']", timeout=WAIT_MS)
        assert "token" not in fresh.url
        browser.close()
