"""Server-sent events and Prometheus metrics from a live HTTP face."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from claude_pool import Pool, PoolConfig
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.testing.web import LiveFace, serve_in_thread

SECRET = "sk-ant-api03-" + "Q" * 90


def make_pool() -> Pool:
    executor = FakeExecutor(events=lambda request: [("api_retry", {"status": 529, "attempt": 1})])
    return Pool(PoolConfig(), slots=1, store=MemoryStore(), executor=executor)


@pytest.fixture
def live() -> Iterator[LiveFace]:
    with serve_in_thread(make_pool) as face:
        yield face


def read_events(
    client: httpx.Client, count: int, headers: dict[str, str] | None = None, **params: Any
) -> list[dict[str, Any]]:
    """The first ``count`` events of a fresh stream (then it disconnects)."""
    events: list[dict[str, Any]] = []
    with client.stream("GET", "/api/v1/events", headers=headers, params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and "id" in current:
                events.append(current)
                current = {}
                if len(events) == count:
                    break
    return events


def submit_and_wait(live: LiveFace, prompt: str, **options: Any) -> str:
    async def work(pool: Pool) -> str:
        task_id = await pool.submit(prompt, **options)
        await pool.wait(task_id, timeout=10)
        return task_id

    return live.call(work)


def test_a_stream_resumed_with_last_event_id_loses_no_event(live: LiveFace) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as client:
        submit_and_wait(live, "one")
        first = read_events(client, 3, after="0")
        assert [e["id"] for e in first] == [1, 2, 3]
        assert first[0]["data"]["seq"] == 1
        # Disconnected: more happens meanwhile.
        submit_and_wait(live, "two")
        submit_and_wait(live, "three")
        latest = live.call(lambda pool: pool.status()).latest_event_seq
        resumed = read_events(client, latest - 3, headers={"Last-Event-ID": "3"})
        assert [e["id"] for e in resumed] == list(range(4, latest + 1))
        queued = {e["data"]["task_id"] for e in resumed if e["event"] == "task_queued"}
        finished = {e["data"]["task_id"] for e in resumed if e["event"] == "task_finished"}
        assert len(queued) == 2
        assert queued <= finished


def test_a_stream_follows_live_events_of_one_task(live: LiveFace) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as client:
        submit_and_wait(live, "other")
        task_id = submit_and_wait(live, "mine")
        events = read_events(client, 3, after="0", task_id=task_id)
        assert {e["data"]["task_id"] for e in events} == {task_id}
        assert events[0]["event"] == "task_queued"


def test_event_payloads_carry_no_secrets(live: LiveFace) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as client:
        submit_and_wait(live, f"deploy with ANTHROPIC_API_KEY={SECRET} now")
        events = read_events(client, 6, after="0")
        text = json.dumps(events)
        assert SECRET not in text
        assert SECRET[:30] not in text
        queued = next(e for e in events if e["event"] == "task_queued")
        assert "deploy with" in queued["data"]["prompt"]


def test_metrics_are_prometheus_text(live: LiveFace) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as client:
        submit_and_wait(live, "counted")
        response = client.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}

    def value(name: str, **labels: str) -> float:
        samples = [
            s.value
            for family in families.values()
            for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert samples, f"{name} {labels} missing"
        return samples[0]

    assert value("claude_pool_tasks", state="completed") == 1
    assert value("claude_pool_tasks", state="pending") == 0
    assert value("claude_pool_slots", state="idle") == 1
    assert value("claude_pool_queue_depth") == 0
    assert value("claude_pool_rate_limited") == 0
    assert value("claude_pool_task_duration_seconds_count", state="completed") == 1
    assert value("claude_pool_spend_by_model_usd_total", model="fake-model") == pytest.approx(0.001)
    assert value("claude_pool_api_retries_total", status="529") == 1
    assert value("claude_pool_webhook_delivery_failures_total") == 0
