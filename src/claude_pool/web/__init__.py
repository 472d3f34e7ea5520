"""The HTTP face: a REST API under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``),
server-sent events at ``/api/v1/events``, Prometheus text at ``/metrics`` and the dashboard at
``/``, served by ``claude-pool serve --http`` (next to MCP at ``/mcp``) and ``claude-pool
worker --http``. A thin face: every rule is the engine's."""

from claude_pool.web.app import HttpFace, create_app

__all__ = ["HttpFace", "create_app"]
