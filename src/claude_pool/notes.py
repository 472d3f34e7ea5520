"""Shared notes and messages: what the pool's tasks are told besides their prompts.

- *Context* notes (key/value) are appended to every task's system prompt from the moment they
  are set (see :class:`~claude_pool.runner.TaskRunner`), in this process and, through their
  ``context_changed`` events, in every other process on the store.
- *Messages* are left for a slot and delivered with its next task's prompt; they are marked
  read only when that task succeeds, so a failed task loses none.
"""

from __future__ import annotations

from claude_pool.errors import SlotNotFound
from claude_pool.eventlog import EventLog
from claude_pool.events import ContextChanged, MessageSent
from claude_pool.slots import SlotSet
from claude_pool.store.base import Message, Store
from claude_pool.types import SlotId, check_text, check_texts, now_ms


class SharedNotes:
    def __init__(self, *, store: Store, events: EventLog, slots: SlotSet) -> None:
        self._store = store
        self._events = events
        self._slots = slots

    async def context_set(self, key: str, value: str) -> None:
        if not key.strip():
            raise ValueError("context key must not be empty")
        check_text(key, "context key")
        check_text(value, f"context value of {key!r}")
        await self._events.write(
            lambda batch: self._store.context_set(key, value, events=batch),
            ContextChanged(key=key),
        )

    async def context_get(self, key: str) -> str | None:
        return await self._store.context_get(key)

    async def context_delete(self, key: str) -> bool:
        return await self._events.write(
            lambda batch: self._store.context_delete(key, events=batch),
            ContextChanged(key=key, deleted=True),
        )

    async def context_list(self) -> dict[str, str]:
        return await self._store.context_list()

    async def send_message(self, from_slot: str, to_slot: str, content: str) -> Message:
        check_texts({"from_slot": from_slot, "to_slot": to_slot, "content": content}, "message")
        if to_slot not in self._slots and await self._store.get_slot(SlotId(to_slot)) is None:
            raise SlotNotFound(to_slot)
        return await self._send(from_slot, to_slot, content)

    async def broadcast(self, from_slot: str, content: str) -> list[Message]:
        check_texts({"from_slot": from_slot, "content": content}, "message")
        return [
            await self._send(from_slot, slot.id, content)
            for slot in self._slots
            if slot.id != from_slot
        ]

    async def _send(self, from_slot: str, to_slot: str, content: str) -> Message:
        return await self._events.write(
            lambda batch: self._store.send_message(
                from_slot, to_slot, content, now_ms(), events=batch
            ),
            MessageSent(from_slot=from_slot, to_slot=to_slot, slot_id=to_slot),
        )

    async def read_messages(self, slot_id: str, *, drain: bool) -> list[Message]:
        return await self._store.read_messages(slot_id, drain=drain)


__all__ = ["SharedNotes"]
