"""Running tasks on the Claude Code CLI (see :mod:`claude_pool.executor.base` for the seam)."""

from claude_pool.executor.base import (
    EventCallback,
    EventKind,
    ExecutionRequest,
    Executor,
    ExecutorEvent,
    SlotStart,
)
from claude_pool.executor.claude import MINIMUM_CLI_VERSION, ClaudeCliExecutor

__all__ = [
    "MINIMUM_CLI_VERSION",
    "ClaudeCliExecutor",
    "EventCallback",
    "EventKind",
    "ExecutionRequest",
    "Executor",
    "ExecutorEvent",
    "SlotStart",
]
