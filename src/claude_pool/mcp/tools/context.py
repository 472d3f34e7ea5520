"""Shared notes every task's system prompt carries: context_set, context_get, context_delete,
context_list."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from claude_pool.mcp.arguments import Name, Note
from claude_pool.mcp.models import ContextDeleted, ContextEntry, ContextListing
from claude_pool.mcp.tooling import READ_ONLY, REMOVES, SETS, pool_tool
from claude_pool.pool import Pool

ContextKey = Annotated[Name, Field(description='A short key, e.g. "repo_conventions".')]


def register_context_tools(server: MCPServer[Any], pool: Pool) -> None:
    """context_set, context_get, context_delete, context_list."""

    @pool_tool(server, "context_set", SETS, "Set a shared note")
    async def context_set(
        key: ContextKey,
        value: Annotated[Note, Field(description="The fact every task should know.")],
    ) -> ContextEntry:
        """Set a shared note that every task's system prompt carries from now on (replacing
        any note with the same key). Use it for facts all slots need: conventions, paths,
        decisions. Keep notes short: they are sent with every task."""
        await pool.context_set(key, value)
        return ContextEntry(key=key, value=value)

    @pool_tool(server, "context_get", READ_ONLY, "Read a shared note")
    async def context_get(key: ContextKey) -> ContextEntry:
        """Read one shared note; found=false when there is none with that key."""
        value = await pool.context_get(key)
        return ContextEntry(key=key, value=value, found=value is not None)

    @pool_tool(server, "context_delete", REMOVES, "Delete a shared note")
    async def context_delete(key: ContextKey) -> ContextDeleted:
        """Delete a shared note; later tasks no longer see it. deleted=false if there was none."""
        return ContextDeleted(key=key, deleted=await pool.context_delete(key))

    @pool_tool(server, "context_list", READ_ONLY, "List shared notes")
    async def context_list() -> ContextListing:
        """Every shared note, by key: what each task's system prompt carries now."""
        return ContextListing(entries=await pool.context_list())


__all__ = [
    "register_context_tools",
]
