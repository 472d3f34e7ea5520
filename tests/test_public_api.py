"""The public API is what ``claude_pool`` exports; changing it is a deliberate act."""

from __future__ import annotations

import inspect

import claude_pool
from claude_pool import Pool

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
        # teams of tasks
        "VerificationRun", "MergeReport",
        # chains and worktrees
        "ChainSpec", "ChainStep", "ChainIsolation", "ChainState", "ChainResult", "StepResult",
        "StepAttempt", "StepState", "SkillResolver", "WorktreeReport",
        # errors
        "ClaudePoolError", "BudgetExhausted", "TaskNotFound", "SlotNotFound", "ChainNotFound",
        "NoSlotAvailable", "PoolShutdown", "ScalingError", "InvalidTaskState", "ConfigError",
        "PermissionPromptDetected", "ClaudeCliError", "ClaudeCliNotFound", "ClaudeCliTooOld",
        "StoreDamaged", "StoreError", "StoreNotFound", "TaskTimeout", "WorktreeError",
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
    assert len(exceptions) == 19
    assert all(issubclass(e, claude_pool.ClaudePoolError) for e in exceptions)


def _own_docstring(obj: object) -> str:
    """The docstring ``obj`` itself has: a class's is not inherited from its bases."""
    if isinstance(obj, type):
        doc = vars(obj).get("__doc__")
    elif isinstance(obj, property):
        doc = obj.fget.__doc__ if obj.fget else None
    elif isinstance(obj, classmethod | staticmethod):
        doc = obj.__func__.__doc__
    else:
        doc = getattr(obj, "__doc__", None)
    return (doc or "").strip()


def test_every_exported_class_and_function_says_what_it_is_for() -> None:
    exported = {name: getattr(claude_pool, name) for name in claude_pool.__all__}
    documentable = {
        name: obj
        for name, obj in exported.items()
        if inspect.isclass(obj) or inspect.isfunction(obj)
    }
    assert len(documentable) > 50
    undocumented = sorted(name for name, obj in documentable.items() if not _own_docstring(obj))
    assert undocumented == []


def test_every_public_pool_method_has_a_docstring() -> None:
    public = {name: member for name, member in vars(Pool).items() if not name.startswith("_")}
    assert {"run", "submit", "fan_out", "chain", "status", "store"} <= set(public)
    undocumented = sorted(name for name, member in public.items() if not _own_docstring(member))
    assert undocumented == []


def test_a_class_without_its_own_docstring_counts_as_undocumented() -> None:
    class Documented:
        """Says what it is for."""

    class Quiet(Documented):
        pass

    assert _own_docstring(Documented)
    assert not _own_docstring(Quiet)
