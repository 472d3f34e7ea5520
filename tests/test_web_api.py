"""The REST API through the ASGI app: every route, every error status, the security rules."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_pool import Pool, PoolConfig, TaskResult, TaskState
from claude_pool.executor.base import EventKind, ExecutionRequest
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.web import HttpFace, create_app

BASE = "http://127.0.0.1:8765"
JSON = {"content-type": "application/json"}


@pytest.fixture
def executor() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
async def pool(executor: FakeExecutor) -> AsyncIterator[Pool]:
    async with Pool(PoolConfig(), slots=1, store=MemoryStore(), executor=executor) as pool:
        yield pool


def client_for(face: HttpFace, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=face), base_url=BASE, headers=headers
    )


@pytest.fixture
async def client(pool: Pool) -> AsyncIterator[httpx.AsyncClient]:
    face = create_app(pool)
    async with client_for(face) as client:
        yield client
    face.close()


async def submit(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/tasks", json={"prompt": "hello", **body})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def test_submit_answers_the_pending_record_and_get_task_shows_its_result(
    client: httpx.AsyncClient, pool: Pool
) -> None:
    task = await submit(client, tags=["a"], priority=3, overrides={"model": "m1", "max_turns": 2})
    assert task["state"] == "pending"
    assert task["tags"] == ["a"]
    assert task["config"]["model"] == "m1"
    await pool.wait(task["id"], timeout=5)
    response = await client.get(f"/api/v1/tasks/{task['id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "completed"
    assert body["result"]["output"] == "done: hello"
    assert body["result"]["cost_microdollars"] == 1000


async def test_submit_with_dependencies_waits_and_the_list_shows_what_for(
    client: httpx.AsyncClient, pool: Pool, executor: FakeExecutor
) -> None:
    executor.hold = True
    first = await submit(client, prompt="first")
    after = await submit(
        client, prompt=f"after {{{{{first['id']}.output}}}}", depends_on=[first["id"]]
    )
    assert after["depends_on"] == [first["id"]]
    page = (await client.get("/api/v1/tasks", params={"state": "pending"})).json()
    assert page["waiting"] == {after["id"]: [first["id"]]}
    status = (await client.get("/api/v1/status")).json()
    assert status["waiting"] == {after["id"]: [first["id"]]}
    executor.release()
    record = await pool.wait(after["id"], timeout=5)
    assert record.result is not None
    assert record.result.output == "done: after done: first"
    refused = await client.post(
        "/api/v1/tasks", json={"prompt": "later", "depends_on": ["task-unknown"]}
    )
    assert refused.status_code in (400, 422), refused.text
    assert "no task in this store" in refused.text


async def test_submit_with_verify_records_each_verification_run(
    client: httpx.AsyncClient, pool: Pool, tmp_path: Path
) -> None:
    check = f'test -f {tmp_path}/ok || {{ touch {tmp_path}/ok; echo "2 failed"; exit 1; }}'
    task = await submit(client, prompt="fix", verify=check)
    await pool.wait(task["id"], timeout=10)
    body = (await client.get(f"/api/v1/tasks/{task['id']}")).json()
    assert body["state"] == "completed"
    assert [(v["exit_code"], v["passed"]) for v in body["result"]["verifications"]] == [
        (1, False),
        (0, True),
    ]
    assert body["attempts"][0]["verification"]["output"] == "2 failed\n"


async def test_a_chain_submitted_over_rest_runs_its_steps_in_order_and_can_be_cancelled(
    client: httpx.AsyncClient, pool: Pool, executor: FakeExecutor
) -> None:
    spec = {
        "name": "two-steps",
        "isolation": "none",
        "tags": ["rest"],
        "steps": [{"name": "plan", "prompt": "plan it"}, {"prompt": "build {previous_output}"}],
    }
    response = await client.post("/api/v1/chains", json=spec)
    assert response.status_code == 201, response.text
    started = response.json()
    assert response.headers["location"] == f"/api/v1/chains/{started['id']}"
    assert [s["name"] for s in started["steps"]] == ["plan", "step-2"]
    await pool.wait_chain(started["id"], timeout=5)
    chain = (await client.get(f"/api/v1/chains/{started['id']}")).json()
    assert chain["state"] == "completed"
    assert chain["steps"][1]["output"] == "done: build done: plan it"
    assert [r.prompt for r in executor.requests] == ["plan it", "build done: plan it"]

    executor.hold = True
    held = (await client.post("/api/v1/chains", json={**spec, "name": "held"})).json()
    await executor.wait_running(1)
    cancelled = await client.post(f"/api/v1/chains/{held['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert (await pool.chain_result(held["id"])).state == "cancelled"


async def test_list_tasks_is_newest_first_filtered_and_paged(
    client: httpx.AsyncClient, pool: Pool
) -> None:
    ids = [(await submit(client, prompt=f"p{i}", tags=["odd" if i % 2 else "even"]))["id"]
           for i in range(5)]  # fmt: skip
    for task_id in ids:
        await pool.wait(task_id, timeout=5)
    page = (await client.get("/api/v1/tasks", params={"limit": 2})).json()
    assert [t["id"] for t in page["tasks"]] == ids[::-1][:2]
    assert page["next_offset"] == 2
    last = (await client.get("/api/v1/tasks", params={"limit": 2, "offset": 4})).json()
    assert [t["id"] for t in last["tasks"]] == [ids[0]]
    assert last["next_offset"] is None
    odd = (await client.get("/api/v1/tasks", params={"tag": "odd"})).json()
    assert [t["id"] for t in odd["tasks"]] == [ids[3], ids[1]]
    done = (await client.get("/api/v1/tasks", params={"state": "completed"})).json()
    assert len(done["tasks"]) == 5
    slot = pool.slots[0].id
    by_slot = (await client.get("/api/v1/tasks", params={"slot": slot})).json()
    assert len(by_slot["tasks"]) == 5
    none = (await client.get("/api/v1/tasks", params={"slot": "nope"})).json()
    assert none["tasks"] == []


async def test_status_slots_chains_and_metrics_answer_the_engine_json(
    client: httpx.AsyncClient, pool: Pool
) -> None:
    task = await submit(client)
    await pool.wait(task["id"], timeout=5)
    status = (await client.get("/api/v1/status")).json()
    assert status["tasks"]["completed"] == 1
    assert status["worker_id"] == pool.worker_id
    slots = (await client.get("/api/v1/slots")).json()["slots"]
    assert [s["id"] for s in slots] == [s.id for s in pool.slots]
    metrics = (await client.get("/api/v1/metrics")).json()
    assert metrics["completed_tasks"] == 1
    assert metrics["total_spend_microdollars"] == 1000
    assert (await client.get("/api/v1/metrics", params={"all_time": "true"})).json()[
        "scope"
    ] == "all_time"
    chain_id = await pool.submit_chain({"name": "c", "steps": [{"name": "s1", "prompt": "x"}]})
    await pool.wait_chain(chain_id, timeout=5)
    chains = (await client.get("/api/v1/chains")).json()["chains"]
    assert [c["id"] for c in chains] == [chain_id]
    chain = (await client.get(f"/api/v1/chains/{chain_id}")).json()
    assert chain["state"] == "completed"
    assert chain["steps"][0]["name"] == "s1"


async def test_review_tasks_are_approved_or_rejected_with_feedback(
    client: httpx.AsyncClient, pool: Pool
) -> None:
    task = await submit(client, review=True)
    await pool.wait(task["id"], timeout=5)
    rejected = await client.post(
        f"/api/v1/tasks/{task['id']}/reject", json={"feedback": "shorter please"}
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["requeued"] is True
    record = await pool.wait(task["id"], timeout=5)
    assert record.state is TaskState.PENDING_REVIEW
    assert "shorter please" in record.prompt
    approved = await client.post(f"/api/v1/tasks/{task['id']}/approve")
    assert approved.status_code == 200
    assert approved.json()["state"] == "completed"
    again = await client.post(f"/api/v1/tasks/{task['id']}/approve")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["type"] == "InvalidTaskState"
    assert "pending_review" in again.json()["detail"]


async def test_cancel_stops_a_running_task(pool: Pool) -> None:
    executor = FakeExecutor(hold=True)
    async with Pool(PoolConfig(), slots=1, store=MemoryStore(), executor=executor) as held:
        face = create_app(held)
        async with client_for(face) as client:
            task = await submit(client)
            await executor.wait_running(1)
            response = await client.post(f"/api/v1/tasks/{task['id']}/cancel")
            assert response.status_code == 200
            assert response.json()["state"] == "cancelled"
        face.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/v1/tasks/nope", None, 404),
        ("POST", "/api/v1/tasks/nope/cancel", None, 404),
        ("POST", "/api/v1/tasks/nope/approve", None, 404),
        ("POST", "/api/v1/tasks/nope/reject", {"feedback": "x"}, 404),
        ("GET", "/api/v1/chains/nope", None, 404),
        ("POST", "/api/v1/chains/nope/cancel", None, 404),
        ("POST", "/api/v1/chains", {"steps": []}, 422),
        ("POST", "/api/v1/chains", {"steps": [{"prompt": "x"}], "unknown": 1}, 422),
        (
            "POST",
            "/api/v1/chains",
            {"steps": [{"prompt": "x"}, {"prompt": "{steps.y.output}"}]},
            422,
        ),
        ("POST", "/api/v1/chains", {"steps": [{"skill": "no-such-skill"}]}, 400),
        ("POST", "/api/v1/chains", {"steps": [{"prompt": "x"}], "depends_on": ["task-nope"]}, 422),
        ("GET", "/api/v1/nothing-here", None, 404),
        ("DELETE", "/api/v1/status", None, 405),
        ("POST", "/api/v1/tasks", {"prompt": ""}, 422),
        ("POST", "/api/v1/tasks", {"prompt": "x", "priority": 2**40}, 422),
        ("POST", "/api/v1/tasks", {"prompt": "x", "unknown": 1}, 422),
        ("POST", "/api/v1/tasks/nope/reject", {"feedback": ""}, 422),
        ("GET", "/api/v1/tasks?state=sleeping", None, 422),
        ("GET", "/api/v1/tasks?limit=0", None, 422),
        ("GET", "/api/v1/tasks?offset=x", None, 422),
        ("GET", "/api/v1/metrics?all_time=maybe", None, 422),
        ("GET", "/api/v1/chains?state=x", None, 422),
        ("GET", "/api/v1/events?after=x", None, 422),
    ],
)
async def test_refused_calls_are_problem_documents_with_a_fitting_status(
    client: httpx.AsyncClient, method: str, path: str, body: Any, status: int
) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["detail"]
    assert problem["title"]


async def test_a_body_that_is_not_json_is_refused(client: httpx.AsyncClient) -> None:
    broken = await client.post("/api/v1/tasks", content=b"{", headers=JSON)
    assert broken.status_code == 400
    untyped = await client.post("/api/v1/tasks", content=b"{}")
    assert untyped.status_code == 415


async def test_an_exhausted_budget_is_429_and_a_drained_pool_503(executor: FakeExecutor) -> None:
    config = PoolConfig(budget_microdollars=1000)
    async with Pool(config, slots=1, store=MemoryStore(), executor=executor) as pool:
        face = create_app(pool)
        async with client_for(face) as client:
            await pool.wait((await submit(client))["id"], timeout=5)
            refused = await client.post("/api/v1/tasks", json={"prompt": "more"})
            assert refused.status_code == 429, refused.text
            assert refused.json()["type"] == "BudgetExhausted"
            assert refused.headers["retry-after"]
            await pool.drain()
            closed = await client.post("/api/v1/tasks", json={"prompt": "more"})
            assert closed.status_code == 503, closed.text
            assert closed.json()["type"] == "PoolShutdown"
        face.close()


async def test_openapi_document_lists_every_route(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    expected = {"getStatus", "listTasks", "submitTask", "getTask", "cancelTask", "approveTask",
                "rejectTask", "listSlots", "listChains", "submitChain", "getChain", "cancelChain",
                "getMetrics"}  # fmt: skip
    assert expected <= operations
    assert "TaskRecord" in document["components"]["schemas"]


# ── security ─────────────────────────────────────────────────────────

ROUTES = [
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/tasks"),
    ("POST", "/api/v1/tasks"),
    ("GET", "/api/v1/tasks/x"),
    ("POST", "/api/v1/tasks/x/cancel"),
    ("POST", "/api/v1/tasks/x/approve"),
    ("POST", "/api/v1/tasks/x/reject"),
    ("GET", "/api/v1/slots"),
    ("GET", "/api/v1/chains"),
    ("POST", "/api/v1/chains"),
    ("GET", "/api/v1/chains/x"),
    ("POST", "/api/v1/chains/x/cancel"),
    ("GET", "/api/v1/metrics"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/metrics"),
]


async def test_every_route_needs_the_token_when_one_is_configured(pool: Pool) -> None:
    face = create_app(pool, tokens=["s3cret"])
    async with client_for(face) as anonymous:
        for method, path in ROUTES:
            response = await anonymous.request(method, path, json={})
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = await anonymous.get("/api/v1/status", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        # The dashboard's page holds no pool data: it loads, then asks for the token.
        assert (await anonymous.get("/")).status_code == 200
    async with client_for(face, authorization="Bearer s3cret") as client:
        assert (await client.get("/api/v1/status")).status_code == 200
        assert (await submit(client))["state"] == "pending"
    face.close()


async def test_posts_from_another_origin_are_refused(client: httpx.AsyncClient) -> None:
    forged = [
        {"origin": "http://evil.example", **JSON},
        {"sec-fetch-site": "cross-site", **JSON},
        {"origin": "http://127.0.0.1.evil.example:8765", **JSON},
        {"origin": "http://127.0.0.1:9999", **JSON},  # another service on this machine
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "text/plain"},
    ]
    for headers in forged:
        response = await client.post("/api/v1/tasks", content=b'{"prompt":"x"}', headers=headers)
        assert response.status_code == 403, headers
        cancel = await client.post("/api/v1/tasks/x/cancel", headers=headers)
        assert cancel.status_code == 403, headers
    same = {"origin": BASE, "sec-fetch-site": "same-origin", **JSON}
    ok = await client.post("/api/v1/tasks", content=b'{"prompt":"x"}', headers=same)
    assert ok.status_code == 201


async def test_an_unknown_host_header_is_refused_against_dns_rebinding(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/status", headers={"host": "rebound.example"})
    assert response.status_code == 421


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for args in (("init", "-q", "-b", "main"), ("config", "user.name", "T"),
                 ("config", "user.email", "t@example.com")):  # fmt: skip
        subprocess.run(["git", "-C", str(root), *args], check=True)
    (root / "notes.txt").write_text("before\n")
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-qm", "initial"], check=True)
    return root


async def test_a_review_task_that_ran_in_a_worktree_shows_its_diff(repo: Path) -> None:
    root = repo

    def edit(request: ExecutionRequest) -> TaskResult:
        (request.cwd / "notes.txt").write_text("after\n")
        (request.cwd / "new.txt").write_text("fresh\n")
        return TaskResult.success_result("edited", 100, 1)

    config = PoolConfig(worktree_isolation=True)
    executor = FakeExecutor(handler=edit)
    async with Pool(config, slots=1, store=MemoryStore(), executor=executor, cwd=root) as pool:
        face = create_app(pool)
        async with client_for(face) as client:
            task = await submit(client, review=True)
            await pool.wait(task["id"], timeout=10)
            diff = (await client.get(f"/api/v1/tasks/{task['id']}/diff")).json()["diff"]
            assert "-before" in diff
            assert "+after" in diff
            assert "+++ b/new.txt" in diff  # committed when the task ended
            assert (await client.get("/api/v1/tasks/nope/diff")).status_code == 404
        face.close()


async def test_a_task_without_a_worktree_has_no_diff(client: httpx.AsyncClient, pool: Pool) -> None:
    task = await submit(client)
    await pool.wait(task["id"], timeout=5)
    assert (await client.get(f"/api/v1/tasks/{task['id']}/diff")).json()["diff"] is None


async def test_status_and_metrics_show_a_rate_limit_hold_while_a_task_retries() -> None:
    retrying = FakeExecutor(
        hold=True,
        events=lambda request: [
            (EventKind.API_RETRY, {"status": 429, "attempt": 1, "delay_ms": 60_000})
        ],
    )
    async with Pool(PoolConfig(), slots=1, store=MemoryStore(), executor=retrying) as pool:
        face = create_app(pool)
        async with client_for(face) as client:
            with pool.subscribe(lambda e: e.type == "rate_limit_held") as held:
                await submit(client)
                await held.get(timeout=5)
            status = (await client.get("/api/v1/status")).json()
            assert status["rate_limit"]["status"] == 429
            metrics = (await client.get("/metrics")).text
            assert "claude_pool_rate_limited 1.0" in metrics
            assert 'claude_pool_api_retries_total{status="429"} 1.0' in metrics
            retrying.release()
        face.close()


async def test_submit_plan_first_holds_the_plan_and_approve_carries_it_out(
    client: httpx.AsyncClient, pool: Pool, executor: FakeExecutor
) -> None:
    task = await submit(client, prompt="add a cache", plan_first=True)
    assert task["plan_first"] is True
    held = await pool.wait(task["id"], timeout=5)
    assert held.review_kind == "plan"
    approved = await client.post(f"/api/v1/tasks/{task['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["plan_approved"] is True
    done = await pool.wait(task["id"], timeout=5)
    assert done.state is TaskState.COMPLETED
    assert executor.requests[0].config.permission_mode == "plan"


async def test_merge_outside_a_git_repository_is_refused_with_a_problem(
    tmp_path: Path,
) -> None:
    async with Pool(PoolConfig(), slots=1, store=MemoryStore(), executor=FakeExecutor(),
                    cwd=tmp_path) as pool:  # fmt: skip
        face = create_app(pool)
        async with client_for(face) as client:
            task = await submit(client)
            await pool.wait(task["id"], timeout=5)
            response = await client.post("/api/v1/merge", json={"ids": [task["id"]]})
        face.close()
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "not inside a git repository" in response.text
