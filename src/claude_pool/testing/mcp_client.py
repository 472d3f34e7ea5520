"""Calling the pool's MCP tools from a test: an in-process MCP client around a ``Pool``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from mcp import Client
from mcp.types import CallToolResult, TextContent

from claude_pool.pool import Pool
from claude_pool.testing.fake_executor import FakeExecutor

WAIT = 10.0
"""Seconds a tool call may take before the test fails."""


def text_of(result: CallToolResult) -> str:
    """The text content of a tool result (e.g. a tool error's message)."""
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


@dataclass
class Served:
    """A client connected to a server for ``pool``, recording progress notifications."""

    client: Client
    pool: Pool
    executor: FakeExecutor
    progress: list[tuple[float, float | None, str | None]] = field(default_factory=list)

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, total, message))

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool that must succeed; returns its structured result."""
        result = await asyncio.wait_for(
            self.client.call_tool(tool, arguments, progress_callback=self.on_progress), WAIT
        )
        assert not result.is_error, text_of(result)
        assert result.structured_content is not None
        return dict(result.structured_content)

    async def fail(self, tool: str, **arguments: Any) -> str:
        """Call a tool that must fail; returns the error text."""
        result = await asyncio.wait_for(self.client.call_tool(tool, arguments), WAIT)
        assert result.is_error, result.structured_content
        return text_of(result)

    def notes(self) -> list[str]:
        """The messages of the progress notifications received so far."""
        return [message or "" for _, _, message in self.progress]
