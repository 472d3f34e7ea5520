"""Webhooks: signed JSON bodies, retries with backoff, the API, and delivery after a crash."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_pool import Pool, PoolConfig
from claude_pool.config import Settings, WebhookConfig, load_settings
from claude_pool.errors import ConfigError
from claude_pool.store import Delivery, DeliveryState, MemoryStore, SqliteStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.testing.webhook_receiver import WebhookReceiver
from claude_pool.web import create_app
from claude_pool.webhooks import config_webhook_id, sign

SECRET = "webhook-s3cret"


def pool_with(*hooks: WebhookConfig, **settings: object) -> Pool:
    config = Settings(webhooks=list(hooks), webhook_retry_secs=0.05, **settings)  # type: ignore[arg-type]
    return Pool(
        PoolConfig(), slots=1, store=MemoryStore(), executor=FakeExecutor(), settings=config
    )


async def settled(pool: Pool, state: str, attempts: int) -> list[Delivery]:
    """The deliveries in ``state`` once ``attempts`` attempts were recorded (the receiver
    answers before the deliverer records the outcome)."""
    async with asyncio.timeout(10):
        await pool.webhooks.wait_attempts(attempts)
    return await pool.webhook_deliveries(state=state)


def verified(body: bytes, signature: str) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


async def test_a_finished_task_is_posted_signed_and_retried_until_it_gets_through() -> None:
    async with WebhookReceiver(statuses=[500, 503, 204]) as receiver:
        hook = WebhookConfig(url=receiver.url, events=["task_finished"], secret=SECRET)
        async with pool_with(hook) as pool:
            task_id = await pool.submit("hello")
            requests = await receiver.wait_for(3)
            deliveries = await settled(pool, "delivered", 3)
        assert [r.status for r in requests] == [500, 503, 204]
        for request in requests:
            assert verified(request.body, request.headers["x-claude-pool-signature"])
            assert request.headers["content-type"] == "application/json"
            assert request.headers["x-claude-pool-event"] == "task_finished"
        assert len({r.headers["x-claude-pool-delivery"] for r in requests}) == 1
        event = requests[-1].json()
        assert (event["type"], event["task_id"], event["success"]) == (
            "task_finished", task_id, True
        )  # fmt: skip
        assert event["seq"] > 0
        [delivery] = deliveries
        assert (delivery.state, delivery.attempts, delivery.last_status) == (
            DeliveryState.DELIVERED, 3, 204
        )  # fmt: skip


async def test_retries_back_off_exponentially_and_end_failed_after_the_last_attempt() -> None:
    async with WebhookReceiver(statuses=[500]) as receiver:
        hook = WebhookConfig(url=receiver.url, events=["task_queued"])
        async with pool_with(hook, webhook_max_attempts=3) as pool:
            assert [pool.webhooks.backoff_secs(n) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]
            await pool.submit("hello")
            await receiver.wait_for(3)
            [delivery] = await settled(pool, "failed", 3)
            assert (delivery.attempts, delivery.last_error) == (3, "HTTP 500")
            assert pool.webhooks.failures == 3
            assert "x-claude-pool-signature" not in receiver.requests[0].headers


async def test_an_unreachable_webhook_is_retried_and_its_error_recorded() -> None:
    hook = WebhookConfig(url="http://127.0.0.1:9/hook", events=["task_queued"])
    async with pool_with(hook, webhook_max_attempts=2) as pool:
        with pool.subscribe(lambda e: e.type == "task_queued") as queued:
            await pool.submit("hello")
            await queued.get(timeout=5)
        failed = await settled(pool, "failed", 2)
        assert failed[0].attempts == 2
        assert failed[0].last_status is None
        assert "Connect" in (failed[0].last_error or "")


@pytest.fixture
async def api_pool() -> AsyncIterator[Pool]:
    async with pool_with() as pool:
        yield pool


async def test_webhooks_are_added_listed_and_removed_through_the_api(api_pool: Pool) -> None:
    face = create_app(api_pool)
    transport = httpx.ASGITransport(app=face)
    async with (
        WebhookReceiver() as receiver,
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
    ):
        added = await client.post(
            "/api/v1/webhooks",
            json={"url": receiver.url, "events": ["task_finished"], "secret": SECRET},
        )
        assert added.status_code == 201, added.text
        hook = added.json()
        assert hook["signed"] is True
        assert "secret" not in hook
        assert SECRET not in added.text
        listed = (await client.get("/api/v1/webhooks")).json()["webhooks"]
        assert [h["id"] for h in listed] == [hook["id"]]
        task_id = await api_pool.submit("hello")
        [request] = await receiver.wait_for(1)
        assert request.json()["task_id"] == task_id
        assert verified(request.body, request.headers["x-claude-pool-signature"])
        await settled(api_pool, "delivered", 1)
        page = (await client.get("/api/v1/webhooks/deliveries")).json()
        assert page["deliveries"][0]["state"] == "delivered"
        assert page["deliveries"][0]["webhook_id"] == hook["id"]
        assert "payload" not in page["deliveries"][0]
        bad = await client.post("/api/v1/webhooks", json={"url": "ftp://x"})
        assert bad.status_code == 422
        unknown = await client.post(
            "/api/v1/webhooks", json={"url": receiver.url, "events": ["task_done"]}
        )
        assert unknown.status_code == 422
        assert "unknown event type" in unknown.json()["detail"]
        gone = await client.delete(f"/api/v1/webhooks/{hook['id']}")
        assert gone.status_code == 204
        again = await client.delete(f"/api/v1/webhooks/{hook['id']}")
        assert again.status_code == 404
        assert again.headers["content-type"] == "application/problem+json"
    face.close()


def test_sign_is_hmac_sha256_of_the_body_in_hex() -> None:
    body = json.dumps({"type": "task_finished"}).encode()
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


# ── durability: a real worker process, killed ────────────────────────


async def _worker(store: Path, config: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claude_pool.cli", "worker", "--store", str(store),
        "--config", str(config), "--slots", "1", "--log-format", "json",
        env=env, cwd=store.parent, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _log_line(process: asyncio.subprocess.Process, needle: str) -> dict[str, Any]:
    assert process.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while line := await process.stderr.readline():
                seen.append(line.decode())
                record: dict[str, Any] = json.loads(line)
                if needle in record["message"]:
                    return record
    except TimeoutError:
        pass
    raise AssertionError(f"the worker did not log {needle!r}; it logged:\n{''.join(seen)}")


@pytest.mark.cli
@pytest.mark.timeout(120)
async def test_a_delivery_due_when_the_worker_is_killed_is_made_after_it_restarts(
    claude_bin: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as probe:  # the receiver's port, nobody listening yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = tmp_path / "pool.db"
    config = tmp_path / "claude-pool.toml"
    config.write_text(
        # Killed between attempts or during one (its claim then holds for the lease, 7 s
        # with this timeout), the delivery is due again within seconds of the restart.
        "webhook_retry_secs = 1\nwebhook_timeout_secs = 1\n\n[[webhook]]\n"
        f'url = "http://127.0.0.1:{port}/hook"\nevents = ["worker_joined"]\n'
        f'secret = "{SECRET}"\n'
    )
    env = {**cli_env, "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin)}
    first = await _worker(store, config, env)
    try:
        # Its own arrival is the event; the receiver is down, so the first attempt fails.
        failed = await _log_line(first, "failed")
        assert failed["webhook_id"].startswith("config-")
        seq = failed["event_seq"]
    finally:
        first.kill()  # SIGKILL: no drain, no goodbye
        await first.wait()
    async with WebhookReceiver(port=port) as receiver:
        second = await _worker(store, config, env)
        try:
            async with asyncio.timeout(60):
                while not any(r.json()["seq"] == seq for r in receiver.requests):
                    await receiver.wait_for(len(receiver.requests) + 1, timeout=30)
        finally:
            second.terminate()
            await second.wait()
    request = next(r for r in receiver.requests if r.json()["seq"] == seq)
    assert request.json()["type"] == "worker_joined"
    assert verified(request.body, request.headers["x-claude-pool-signature"])
    reopened = SqliteStore(store)
    await reopened.open()
    try:
        [delivery] = [d for d in await reopened.list_deliveries() if d.seq == seq]
        assert delivery.state is DeliveryState.DELIVERED
        assert delivery.attempts >= 2
    finally:
        await reopened.close()


def test_webhook_tables_in_the_config_file_become_settings(tmp_path: Path) -> None:
    config = tmp_path / "claude-pool.toml"
    config.write_text(
        "webhook_max_attempts = 4\n\n"
        '[[webhook]]\nurl = "https://example.com/a"\nevents = ["task_finished"]\n'
        'secret_env = "HOOK_SECRET"\n\n'
        '[[webhook]]\nurl = "http://127.0.0.1:9000/b"\n'
    )
    settings = load_settings(config, env={})
    first, second = settings.webhooks
    assert (first.url, first.events) == ("https://example.com/a", ["task_finished"])
    assert first.secret_value({"HOOK_SECRET": "from-env"}) == "from-env"
    assert (second.events, second.secret_value({})) == (["*"], None)
    assert settings.webhook_max_attempts == 4
    assert config_webhook_id(first) == config_webhook_id(WebhookConfig(**first.model_dump()))


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('url = "https://x"\nretries = 3\n', "webhook[0].retries"),
        ('url = "ftp://x"\n', "url"),
        ('url = "https://x"\nevents = ["task_finishd"]\n', "did you mean 'task_finished'"),
    ],
)
def test_a_bad_webhook_table_names_its_key(tmp_path: Path, table: str, key: str) -> None:
    config = tmp_path / "claude-pool.toml"
    config.write_text(f"[[webhook]]\n{table}")
    with pytest.raises(ConfigError) as error:
        load_settings(config, env={})
    assert key in str(error.value)


def test_a_pool_without_webhooks_never_loads_the_http_client() -> None:
    # httpx and its TLS context cost about a third of a second of every pool's start.
    script = """
import asyncio, sys
from claude_pool import Pool, PoolConfig
from claude_pool.testing.fake_executor import FakeExecutor

async def main():
    async with Pool(PoolConfig(), slots=1, executor=FakeExecutor()) as pool:
        assert (await pool.run("hello")).success
        await pool.webhook_deliveries()

asyncio.run(main())
print("httpx" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False", done.stderr
