"""Text that cannot reach a process (a NUL, an unpaired surrogate) is refused where it enters,
naming the field, and never breaks later work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client
from typer.testing import CliRunner

from claude_pool import ChainSpec, Pool, PoolConfig, Settings, TaskOverrides, TaskState
from claude_pool.cli import EXIT_USAGE, app
from claude_pool.mcp import build_server
from claude_pool.store import MemoryStore, SqliteStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.testing.mcp_client import Served

NUL = "a\x00b"
SURROGATE = "a\udc80b"


def make_pool(executor: FakeExecutor | None = None, **kwargs: object) -> Pool:
    return Pool(PoolConfig(), slots=1, store=kwargs.pop("store", MemoryStore()),  # type: ignore[arg-type]
                executor=executor or FakeExecutor(), **kwargs)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
async def test_a_context_value_that_cannot_reach_a_process_is_refused_and_later_tasks_run(
    bad: str,
) -> None:
    # Regression: context_set(value="a\x00b") was accepted, then every later task failed
    # with "embedded null byte".
    async with make_pool() as pool:
        with pytest.raises(ValueError, match="context value of 'k'"):
            await pool.context_set("k", bad)
        with pytest.raises(ValueError, match="context key"):
            await pool.context_set(bad, "fine")
        assert await pool.context_list() == {}
        result = await pool.run("still works")
    assert result.success


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda pool: pool.submit(NUL), "prompt"),
        (lambda pool: pool.submit("ok", tags=["fine", NUL]), "tags"),
        (lambda pool: pool.submit("ok", role=SURROGATE), "target"),
        (lambda pool: pool.send_message("coordinator", "slot-x", NUL), "message.content"),
        (lambda pool: pool.broadcast(NUL, "hi"), "message.from_slot"),
    ],
)
async def test_library_calls_refuse_unusable_text_naming_the_field(
    call: object, field: str
) -> None:
    async with make_pool() as pool:
        with pytest.raises(ValueError, match=field.replace(".", r"\.").replace("[", r"\[")):
            await call(pool)  # type: ignore[operator]
        assert await pool.list_tasks() == []


async def test_overrides_slot_settings_and_chain_steps_refuse_unusable_text() -> None:
    with pytest.raises(ValueError, match="system_prompt contains a NUL"):
        TaskOverrides(system_prompt=NUL)
    with pytest.raises(ValueError, match=r"mcp_servers\.docs\.env\.KEY contains"):
        TaskOverrides(mcp_servers={"docs": {"command": "x", "env": {"KEY": SURROGATE}}})
    with pytest.raises(ValueError, match="step prompt contains a NUL"):
        ChainSpec.model_validate({"steps": [{"prompt": NUL}]})
    with pytest.raises(ValueError, match=r"env\.HOME contains"):
        Settings(env={"HOME": NUL})
    async with make_pool() as pool:
        with pytest.raises(ValueError, match="description contains a NUL"):
            await pool.configure_slot(pool.slots[0].id, description=NUL)


async def test_rejection_feedback_that_cannot_reach_a_process_is_refused() -> None:
    async with make_pool() as pool:
        task_id = await pool.submit("draft", review=True)
        assert (await pool.wait(task_id, timeout=5)).state is TaskState.PENDING_REVIEW
        with pytest.raises(ValueError, match="feedback contains a NUL"):
            await pool.reject(task_id, NUL)
        assert (await pool.get_task(task_id)).state is TaskState.PENDING_REVIEW


async def test_a_bad_note_already_in_a_store_does_not_break_later_tasks(tmp_path: Path) -> None:
    # A store written before this check may hold one: it is left out of prompts, not fatal.
    store = SqliteStore(tmp_path / "pool.db")
    await store.open()
    await store.context_set("old", NUL)
    await store.context_set("good", "use tabs")
    await store.close()
    executor = FakeExecutor()
    async with make_pool(executor, store=SqliteStore(tmp_path / "pool.db")) as pool:
        result = await pool.run("go on")
    assert result.success
    system_prompt = executor.requests[0].config.system_prompt or ""
    assert "use tabs" in system_prompt
    assert "\x00" not in system_prompt


@asynccontextmanager
async def serving() -> AsyncIterator[Served]:
    executor = FakeExecutor()
    async with make_pool(executor) as pool, Client(build_server(pool)) as client:
        yield Served(client, pool, executor)


async def test_mcp_tools_refuse_unusable_text_and_the_server_keeps_serving() -> None:
    async with serving() as served:
        error = await served.fail("context_set", key="k", value=NUL)
        assert "context value of 'k' contains a NUL" in error
        error = await served.fail("pool_submit", prompt=f"do {NUL}")
        assert "prompt contains a NUL" in error
        outcome = await served.call("pool_run", prompt="fine")
    assert outcome["state"] == "completed"


def test_a_config_file_with_unusable_text_is_a_clear_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "claude-pool.toml"
    config.write_text('system_prompt = "be \\u0000 brief"\n', encoding="utf-8")
    run = CliRunner().invoke(app, ["status", "--store", ":memory:", "--config", str(config)])
    assert run.exit_code == EXIT_USAGE
    assert "system_prompt" in run.output
    assert "NUL" in run.output
    assert "Traceback" not in run.output
