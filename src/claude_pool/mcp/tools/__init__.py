"""The pool's operations as MCP tools, one module per area.

Each module has a ``register_*`` function (a :data:`~claude_pool.mcp.tooling.ToolGroup`) that
adds its tools for a :class:`Pool` to an ``MCPServer``; :data:`TOOL_GROUPS` lists them all in
the order clients see the tools. Tool bodies only translate: arguments (shared types in
:mod:`claude_pool.mcp.arguments`) into ``Pool`` calls, results into models (shared ones in
:mod:`claude_pool.mcp.models`), and engine errors into tool errors that say what was wrong and
what to do (:mod:`claude_pool.mcp.errors`). Docstrings are the tools' descriptions, written for
the model that reads them.
"""

from claude_pool.mcp.tooling import ToolGroup
from claude_pool.mcp.tools.chains import register_chain_tools
from claude_pool.mcp.tools.claims import register_claim_tools
from claude_pool.mcp.tools.context import register_context_tools
from claude_pool.mcp.tools.inspection import register_inspection_tools
from claude_pool.mcp.tools.merging import register_merge_tools
from claude_pool.mcp.tools.messages import register_message_tools
from claude_pool.mcp.tools.review import register_review_tools
from claude_pool.mcp.tools.routing import register_routing_tools
from claude_pool.mcp.tools.skills import register_skill_tools
from claude_pool.mcp.tools.slots import register_slot_tools
from claude_pool.mcp.tools.tasks import register_task_tools
from claude_pool.mcp.tools.workflows import register_workflow_tools

POOL_TOOL_GROUPS: tuple[ToolGroup, ...] = (
    register_task_tools,
    register_inspection_tools,
    register_review_tools,
    register_merge_tools,
    register_slot_tools,
    register_claim_tools,
    register_context_tools,
    register_message_tools,
)
"""Every tool group of the pool engine, in the order they are listed to clients."""

SKILL_TOOL_GROUPS: tuple[ToolGroup, ...] = (
    register_skill_tools,
    register_workflow_tools,
    register_routing_tools,
)
"""Skills (and skill prompts), workflows and routing, in the order they are listed."""

TOOL_GROUPS: tuple[ToolGroup, ...] = (
    *POOL_TOOL_GROUPS,
    register_chain_tools,
    *SKILL_TOOL_GROUPS,
)
"""The engine's tools, then chains (with pool://chains/{id}), skills (also as prompts),
workflows and routing."""

__all__ = [
    "POOL_TOOL_GROUPS",
    "SKILL_TOOL_GROUPS",
    "TOOL_GROUPS",
    "register_chain_tools",
    "register_claim_tools",
    "register_context_tools",
    "register_inspection_tools",
    "register_merge_tools",
    "register_message_tools",
    "register_review_tools",
    "register_routing_tools",
    "register_skill_tools",
    "register_slot_tools",
    "register_task_tools",
    "register_workflow_tools",
]
