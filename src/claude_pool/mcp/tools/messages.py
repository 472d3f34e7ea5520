"""Messages to slots, delivered with their next task: pool_send_message, pool_broadcast,
pool_read_messages, pool_peek_messages."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from claude_pool.errors import SlotNotFound
from claude_pool.mcp.arguments import Name, Note, SlotIdArg
from claude_pool.mcp.models import MessageList, MessageView
from claude_pool.mcp.tooling import CHANGES, READ_ONLY, pool_tool
from claude_pool.pool import Pool
from claude_pool.types import SlotId

FromSlot = Annotated[
    Name, Field(description='Who the message is from: your own name, or "coordinator".')
]


def register_message_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_send_message, pool_broadcast, pool_read_messages, pool_peek_messages."""

    @pool_tool(server, "pool_send_message", CHANGES, "Message a slot")
    async def pool_send_message(
        to_slot: SlotIdArg,
        content: Annotated[Note, Field(min_length=1, description="The message.")],
        from_slot: FromSlot = "coordinator",
    ) -> MessageView:
        """Leave a message for a slot. It is delivered with that slot's next task (prepended
        to the prompt), and kept until a task with it succeeds."""
        return MessageView.of(await pool.send_message(from_slot, to_slot, content))

    @pool_tool(server, "pool_broadcast", CHANGES, "Message every slot")
    async def pool_broadcast(
        content: Annotated[Note, Field(min_length=1, description="The message.")],
        from_slot: FromSlot = "coordinator",
    ) -> MessageList:
        """Leave the same message for every slot (except the sender); each gets it with its
        next task."""
        sent = await pool.broadcast(from_slot, content)
        return MessageList(messages=[MessageView.of(m) for m in sent])

    @pool_tool(server, "pool_read_messages", CHANGES, "Read and clear a slot's messages")
    async def pool_read_messages(slot_id: SlotIdArg) -> MessageList:
        """A slot's unread messages, which are then marked read (so its next task will not
        get them). pool_peek_messages looks without marking."""
        await _check_slot_exists(pool, slot_id)
        return MessageList(messages=[MessageView.of(m) for m in await pool.read_messages(slot_id)])

    @pool_tool(server, "pool_peek_messages", READ_ONLY, "Look at a slot's messages")
    async def pool_peek_messages(slot_id: SlotIdArg) -> MessageList:
        """A slot's unread messages, left unread (pool_read_messages marks them read)."""
        await _check_slot_exists(pool, slot_id)
        return MessageList(messages=[MessageView.of(m) for m in await pool.peek_messages(slot_id)])


async def _check_slot_exists(pool: Pool, slot_id: str) -> None:
    """``SlotNotFound`` unless ``slot_id`` is a slot of this pool or of the store (a worker's
    slot sharing it): the rule ``Pool.send_message`` applies, so that a typo is an error
    rather than an empty inbox."""
    try:
        pool.slot(slot_id)
    except SlotNotFound:
        if await pool.store.get_slot(SlotId(slot_id)) is None:
            raise


__all__ = [
    "register_message_tools",
]
