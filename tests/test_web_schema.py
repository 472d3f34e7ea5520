"""schemathesis against the OpenAPI document of a live HTTP face: no answer is a server
error, and every answer (status, content type, body) matches the document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from claude_pool import Pool, PoolConfig
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.testing.web import LiveFace, serve_in_thread

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


UNREACHABLE = "http://127.0.0.1:9/hook"
"""Loopback's discard port: nothing listens, a delivery fails at once."""


def make_pool() -> Pool:
    return Pool(PoolConfig(), slots=1, store=MemoryStore(), executor=FakeExecutor())


@pytest.fixture(scope="module")
def live() -> Iterator[LiveFace]:
    with serve_in_thread(make_pool) as face:
        # Something to find: a finished task, a task held for review, a chain.
        async def seed(pool: Pool) -> None:
            await pool.wait(await pool.submit("seed", tags=["t"]), timeout=10)
            await pool.wait(await pool.submit("review me", review=True), timeout=10)
            chain = await pool.submit_chain({"steps": [{"name": "a", "prompt": "x"}]})
            await pool.wait_chain(chain, timeout=10)

        face.call(seed)
        yield face


@pytest.mark.timeout(180)
def test_every_answer_matches_the_openapi_document(live: LiveFace) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/api/v1/openapi.json")
    # /api/v1/events never ends (tests/test_web_events.py reads it).
    operations = [
        op for op in (result.ok() for result in schema.get_all_operations())
        if (op.method.upper(), op.path) != ("GET", "/api/v1/events")
    ]  # fmt: skip
    assert len(operations) >= 16
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            if (
                case.path == "/api/v1/webhooks"
                and isinstance(case.body, dict)
                and "url" in case.body
            ):
                # A webhook sends the pool's events to its URL: never to a made-up host.
                case.body["url"] = UNREACHABLE
            case.call_and_validate(checks=CHECKS)

        check()
    hooks = live.call(lambda pool: pool.list_webhooks())
    assert hooks  # some were added...
    assert {hook.url for hook in hooks} == {UNREACHABLE}  # ...none anywhere else
