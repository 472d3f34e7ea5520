"""The MCP face of the pool: ``claude-pool serve``.

``build_server(pool)`` gives an ``MCPServer`` (official MCP SDK) whose tools and resources act
on an open :class:`~claude_pool.Pool`; ``serve(settings, transport)`` runs one over stdio or
streamable HTTP and drains the pool on exit.
"""

from claude_pool.config import parse_tokens
from claude_pool.mcp.auth import BearerTokenMiddleware, is_loopback
from claude_pool.mcp.errors import tool_error
from claude_pool.mcp.resources import POOL_RESOURCE_GROUPS, register_pool_resources
from claude_pool.mcp.server import (
    DEFAULT_PORT,
    DEFAULT_TOOL_GROUPS,
    INSTRUCTIONS,
    MCP_PATH,
    build_server,
    check_http_binding,
    http_app,
    http_server,
    serve,
)
from claude_pool.mcp.tooling import ToolGroup, pool_tool
from claude_pool.mcp.tools import POOL_TOOL_GROUPS

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TOOL_GROUPS",
    "INSTRUCTIONS",
    "MCP_PATH",
    "POOL_RESOURCE_GROUPS",
    "POOL_TOOL_GROUPS",
    "BearerTokenMiddleware",
    "ToolGroup",
    "build_server",
    "check_http_binding",
    "http_app",
    "http_server",
    "is_loopback",
    "parse_tokens",
    "pool_tool",
    "register_pool_resources",
    "serve",
    "tool_error",
]
