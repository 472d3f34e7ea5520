"""The in-memory store meets the store contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from claude_pool.errors import StoreError
from claude_pool.store import MemoryStore, Store
from claude_pool.testing.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        store = MemoryStore()
        await store.open()
        yield store
        await store.close()


def test_memory_store_implements_the_store_protocol() -> None:
    assert isinstance(MemoryStore(), Store)


async def test_a_closed_memory_store_refuses_work_until_reopened() -> None:
    store = MemoryStore()
    await store.open()
    await store.context_set("k", "v")
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.context_get("k")
    await store.open()
    assert await store.context_get("k") == "v"
