"""The public API is what ``claude_pool`` exports; changing it is a deliberate act."""

from __future__ import annotations

import claude_pool

PUBLIC_API = sorted(
    [
        # the engine
        "Pool", "PoolStatus", "DrainSummary", "Settings", "load_settings",
        "EffectiveConfig", "effective_config", "FanOutItem", "RejectOutcome",
        # what happens in a pool
        "Event", "describe",
        # the seed's domain model
        "PoolConfig", "SlotConfig", "TaskOverrides", "ScalingConfig", "SlotMode",
        "PermissionMode", "Effort", "SlotRecord", "SlotState", "SlotId", "TaskRecord",
        "TaskState", "TaskResult", "TaskFilter", "TaskId", "SessionMetrics", "ModelMetrics",
        "MetricsFilter", "now_ms",
        # chains and worktrees
        "ChainSpec", "ChainStep", "ChainIsolation", "ChainState", "ChainResult", "StepResult",
        "StepAttempt", "StepState", "SkillResolver", "WorktreeReport",
        # errors
        "ClaudePoolError", "BudgetExhausted", "TaskNotFound", "SlotNotFound", "ChainNotFound",
        "NoSlotAvailable", "PoolShutdown", "ScalingError", "InvalidTaskState", "ConfigError",
        "PermissionPromptDetected", "ClaudeCliError", "ClaudeCliNotFound", "ClaudeCliTooOld",
        "StoreDamaged", "StoreError", "TaskTimeout", "WorktreeError",
        "__version__",
    ]
)  # fmt: skip


def test_the_package_exports_exactly_the_pinned_public_api() -> None:
    assert sorted(claude_pool.__all__) == PUBLIC_API


def test_every_exported_name_exists() -> None:
    missing = [name for name in claude_pool.__all__ if not hasattr(claude_pool, name)]
    assert missing == []


def test_every_exported_exception_is_a_claude_pool_error() -> None:
    exported = [getattr(claude_pool, name) for name in claude_pool.__all__]
    exceptions = [e for e in exported if isinstance(e, type) and issubclass(e, Exception)]
    assert len(exceptions) == 18
    assert all(issubclass(e, claude_pool.ClaudePoolError) for e in exceptions)
