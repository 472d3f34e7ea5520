"""The PostgreSQL store meets the store contract on a real server, keeps its schema by
numbered migrations, and is atomic across store objects (as it is across machines)."""

from __future__ import annotations

import asyncio
import builtins
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from claude_pool.errors import StoreError
from claude_pool.events import ContextChanged
from claude_pool.store import Store, open_store
from claude_pool.store.base import Webhook
from claude_pool.store.postgres import PostgresStore, migrations, schema_sql, split_store_url
from claude_pool.testing.postgres import fresh_schema, require_postgres
from claude_pool.testing.store_contract import T0, StoreContract, make_task
from claude_pool.types import SlotId, TaskId, now_ms

pytestmark = pytest.mark.postgres


class TestPostgresStore(StoreContract):
    @pytest.fixture
    async def store(self, postgres_url: str) -> AsyncIterator[Store]:
        store = PostgresStore(postgres_url)
        await store.open()
        yield store
        await store.close()


@pytest.fixture
async def two_stores(postgres_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two store objects on one schema: what two machines sharing the store look like."""
    first, second = PostgresStore(postgres_url), PostgresStore(postgres_url)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


def _schema_of(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[Any]]:
    """Tables, columns, indexes and constraints of ``schema``, comparable across schemas."""
    columns = conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable, "
        "regexp_replace(coalesce(column_default, ''), '\\S+_seq''', 'SEQ''') "
        "FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 2",
        (schema,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT tablename, indexname, replace(indexdef, %s, 'S.') FROM pg_indexes "
        "WHERE schemaname = %s ORDER BY 1, 2",
        (f"{schema}.", schema),
    ).fetchall()
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = %s::regnamespace ORDER BY 2",
        (schema,),
    ).fetchall()
    return {
        "columns": columns,
        "indexes": indexes,
        "constraints": [
            (t.removeprefix(f"{schema}."), n, d.replace(f"{schema}.", "S."))
            for t, n, d in constraints
        ],
    }


def test_applying_every_migration_yields_exactly_the_current_schema() -> None:
    url = require_postgres()
    with fresh_schema(url) as migrated_url, fresh_schema(url) as current_url:
        migrated, current = split_store_url(migrated_url)[1], split_store_url(current_url)[1]
        assert migrated
        assert current
        with psycopg.connect(url, autocommit=True) as conn:
            for schema, scripts in (
                (migrated, [m.sql for m in migrations()]),
                (current, [schema_sql()]),
            ):
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
                for script in scripts:
                    conn.execute(script.encode())
            conn.execute("SET search_path TO public")  # both schemas' names qualified alike
            assert _schema_of(conn, migrated) == _schema_of(conn, current)
            assert _schema_of(conn, current)["columns"], "the schema defines tables"
            counters = [
                conn.execute(
                    sql.SQL("SELECT name, value FROM {}.counters ORDER BY name").format(
                        sql.Identifier(schema)
                    )
                ).fetchall()
                for schema in (migrated, current)
            ]
            assert counters[0] == counters[1]


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "0001_initial.sql"


async def test_a_new_store_is_at_the_latest_schema_version(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    await store.close()
    conninfo, schema = split_store_url(postgres_url)
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT version FROM {}.claude_pool_schema").format(sql.Identifier(schema))
        )
        assert await cur.fetchall() == [(migrations()[-1].version,)]


async def test_a_store_from_a_newer_claude_pool_is_refused(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    await store.close()
    conninfo, schema = split_store_url(postgres_url)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("UPDATE {}.claude_pool_schema SET version = 999").format(sql.Identifier(schema))
        )
    with pytest.raises(StoreError, match=r"newer than the .* upgrade claude-pool"):
        await PostgresStore(postgres_url).open()


async def test_a_schema_of_another_application_is_refused(postgres_url: str) -> None:
    conninfo, schema = split_store_url(postgres_url)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        await conn.execute(
            sql.SQL("CREATE TABLE {}.tasks (id INTEGER)").format(sql.Identifier(schema))
        )
    with pytest.raises(StoreError, match="not a claude-pool store"):
        await PostgresStore(postgres_url).open()


async def test_workers_opening_one_new_store_at_once_set_it_up_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    await stores[0].insert_task(make_task("x"))
    for store in stores:
        assert len(await store.list_tasks()) == 1
        await store.close()


async def test_opening_twice_and_closing_twice_is_harmless(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    await store.open()
    await store.close()
    await store.close()


async def test_using_a_store_that_is_not_open_is_a_store_error(postgres_url: str) -> None:
    with pytest.raises(StoreError, match=r"not open; call open\(\) first"):
        await PostgresStore(postgres_url).get_spend()


async def test_an_unreachable_server_gives_a_store_error_that_says_what_to_do() -> None:
    store = PostgresStore("postgresql://127.0.0.1:9/nowhere?connect_timeout=1")
    with pytest.raises(StoreError, match="server is running and reachable") as info:
        await store.open()
    assert isinstance(info.value.__cause__, psycopg.Error)


async def test_the_password_is_never_in_a_message() -> None:
    store = PostgresStore("postgresql://u:s3cret@127.0.0.1:9/db?connect_timeout=1")
    assert "s3cret" not in repr(store)
    with pytest.raises(StoreError) as info:
        await store.open()
    assert "s3cret" not in str(info.value)


async def test_two_store_objects_never_claim_a_task_twice(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, _ = two_stores
    tasks = [make_task(f"t{i}") for i in range(60)]
    await first.insert_tasks(tasks)

    async def drain(store: PostgresStore, slot: str) -> list[str]:
        taken = []
        while (task := await store.claim_task(SlotId(slot), None, None, slot, T0)) is not None:
            taken.append(task.record.id)
        return taken

    runs = await asyncio.gather(*(drain(s, f"{n}-{i}") for n, s in enumerate(two_stores)
                                  for i in range(4)))  # fmt: skip
    claimed = Counter(t for run in runs for t in run)
    assert sorted(claimed) == sorted(t.record.id for t in tasks)
    assert set(claimed.values()) == {1}


async def test_reservations_from_two_store_objects_never_pass_the_limit(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two_stores
    await first.add_spend(100)
    granted = await asyncio.gather(
        *(
            store.reserve_budget(TaskId(f"t{i}"), f"w{i % 2}", 100, 1000, T0)
            for i in range(20)
            for store in (first if i % 2 else second,)
        )
    )
    assert sum(granted) == 9
    assert await second.budget_state() == (100, 900)


async def test_two_store_objects_never_both_take_over_a_chain(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, _ = two_stores
    await first.upsert_chain("c", {"id": "c", "owner": "dead"}, "running", T0)
    wins = await asyncio.gather(
        *(s.claim_chain("c", "dead", f"w{i}", T0) for i, s in enumerate([*two_stores] * 5))
    )
    assert sum(wins) == 1


async def test_one_store_object_wakes_when_another_appends_an_event(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two_stores
    latest = await second.latest_event_seq()
    waiter = asyncio.ensure_future(second.wakeups().wait(latest, timeout=30))
    await asyncio.sleep(0.2)  # the listener is up (the result does not depend on it)
    event = ContextChanged(key="k", at_ms=T0)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    await first.append_events([event])
    async with asyncio.timeout(10):
        assert await waiter == event.seq
    assert loop.time() - sent < second.wakeups().fallback_secs, "woken by NOTIFY, not polling"
    assert second.wakeups().notifications >= 1


async def test_events_are_numbered_in_the_order_they_become_visible(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two_stores
    seen: list[int] = []

    async def write(store: PostgresStore, n: int) -> None:
        for i in range(20):
            await store.append_events([ContextChanged(key=f"{n}-{i}", at_ms=T0)])

    async def read() -> None:
        after = 0
        for _ in range(200):
            page = await second.read_events(after=after)
            seen.extend(e.seq for e in page)
            if page:
                after = page[-1].seq
            await asyncio.sleep(0)

    await asyncio.gather(write(first, 1), write(second, 2), write(first, 3), read())
    rest = await second.read_events(after=seen[-1] if seen else 0)
    seen.extend(e.seq for e in rest)
    assert seen == list(range(1, 61)), "no reader skips an event committed late"


def test_open_store_gives_a_postgres_store_for_postgres_urls() -> None:
    for url in ("postgresql://u@h/db", "postgres://h/db?schema=pool"):
        assert isinstance(open_store(url), PostgresStore)
    assert split_store_url("postgres://h/db?schema=pool&sslmode=require") == (
        "postgresql://h/db?sslmode=require",
        "pool",
    )


def test_a_postgres_url_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    real_import = builtins.__import__

    def no_psycopg(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in ("psycopg", "psycopg_pool"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    for name in list(sys.modules):
        if name.startswith(("claude_pool.store.postgres", "psycopg")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(StoreError, match=re.escape("pip install 'claude-pool[postgres]'")):
        open_store("postgresql://127.0.0.1/test")


def test_the_postgres_store_implements_every_store_role() -> None:
    assert isinstance(PostgresStore("postgresql://127.0.0.1/test"), Store)


def test_no_server_skips_the_postgres_tests_outside_ci_and_fails_them_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLAUDE_POOL_TEST_POSTGRES", "postgresql://127.0.0.1:9/x?connect_timeout=1")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL server answers"):
        require_postgres()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and the PostgreSQL tests cannot run"):
        require_postgres()


async def test_a_machine_whose_clock_is_behind_does_not_look_dead_to_the_others(
    postgres_url: str,
) -> None:
    def behind() -> int:
        return now_ms() - 60_000

    here = PostgresStore(postgres_url)
    late = PostgresStore(postgres_url, clock=behind)  # a machine a minute behind
    await here.open()
    await late.open()
    try:
        assert late.clock_offset_ms == 60_000
        assert here.clock_offset_ms == 0
        await late.heartbeat_worker("late-machine:1:0.a", behind())
        alive_since = now_ms() - 5_000
        assert await here.live_workers(alive_since) == ["late-machine:1:0.a"]
        assert await late.live_workers(behind() - 5_000) == ["late-machine:1:0.a"]
    finally:
        await here.close()
        await late.close()


async def test_a_machine_whose_clock_is_ahead_never_takes_a_webhook_delivery_another_holds(
    postgres_url: str,
) -> None:
    """Regression: delivery leases were compared in each worker's own clock, so a worker whose
    clock ran more than a lease ahead delivered again what another worker was delivering."""

    def ahead() -> int:
        return now_ms() + 60_000

    here = PostgresStore(postgres_url)
    early = PostgresStore(postgres_url, clock=ahead)  # a machine a minute ahead
    await here.open()
    await early.open()
    try:
        assert early.clock_offset_ms == -60_000
        await here.put_webhook(Webhook(id="h", url="http://a/", created_at_ms=now_ms()))
        await early.append_events([ContextChanged(key="k", at_ms=ahead())])
        # Due at once for both, whoever wrote the event and whatever their clocks say.
        (leased,) = await here.claim_deliveries(now_ms(), lease_ms=30_000)
        assert await early.claim_deliveries(ahead(), lease_ms=30_000) == []
        due = await early.next_delivery_due_ms()
        assert due is not None
        assert ahead() + 25_000 < due <= ahead() + 30_000, "the lease's end, in its clock"
        await here.finish_delivery(
            leased.id, delivered=False, status=500, error="HTTP 500", now_ms=now_ms(),
            retry_at_ms=now_ms() + 10_000,
        )  # fmt: skip
        assert await early.claim_deliveries(ahead(), lease_ms=30_000) == []
        (retry,) = await early.list_deliveries()
        assert ahead() + 5_000 < retry.next_attempt_ms <= ahead() + 10_000
        assert await early.claim_deliveries(ahead() + 10_001, lease_ms=30_000) != []
    finally:
        await here.close()
        await early.close()
