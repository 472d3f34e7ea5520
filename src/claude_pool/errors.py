"""One error tree, rooted at :class:`ClaudePoolError`.

Each error carries structured fields and a message that says what happened and what to do.
Lower-level errors (sqlite3, psycopg, OSError) are translated at the boundary with
``raise ... from exc``.
"""

from __future__ import annotations


class ClaudePoolError(Exception):
    """Base of every error claude-pool raises on purpose."""


class ConfigError(ClaudePoolError):
    """A configuration value is invalid; ``key`` names it and ``value`` is what was given."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"invalid configuration {key}={value!r}: {reason}")


class BudgetExhausted(ClaudePoolError):
    """The pool's budget is spent, so new work is refused (``spent`` and ``limit`` in
    microdollars)."""

    def __init__(self, spent: int, limit: int) -> None:
        self.spent = spent
        self.limit = limit
        super().__init__(
            f"pool budget exhausted: spent {spent / 1e6:.6f} USD of {limit / 1e6:.6f} USD; "
            "raise the budget (budget_usd in the config file, CLAUDE_POOL_BUDGET_USD or "
            "--budget-usd; budget_microdollars in PoolConfig) or start a new pool to run more work"
        )


class TaskNotFound(ClaudePoolError):
    """No task has the id ``task_id``."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"no task with id {task_id!r}; list tasks to see the known ids")


class SlotNotFound(ClaudePoolError):
    """No slot has the id ``slot_id``."""

    def __init__(self, slot_id: str) -> None:
        self.slot_id = slot_id
        super().__init__(f"no slot with id {slot_id!r}; list slots to see the known ids")


class InvalidTaskState(ClaudePoolError):
    """An operation that needs the task in one state found it in another."""

    def __init__(self, task_id: str, state: str, expected: str, operation: str) -> None:
        self.task_id = task_id
        self.state = state
        self.expected = expected
        self.operation = operation
        super().__init__(
            f"cannot {operation} task {task_id}: it is {state}, and {operation} needs it {expected}"
        )


class NoSlotAvailable(ClaudePoolError):
    """No slot (matching ``target``, if the task names one) became free within
    ``timeout_secs``."""

    def __init__(self, timeout_secs: float, target: str | None = None) -> None:
        self.timeout_secs = timeout_secs
        self.target = target
        where = f" matching {target}" if target else ""
        super().__init__(
            f"no slot{where} became free within {timeout_secs:g}s; add slots (scale_up), "
            "raise slot_assignment_timeout_secs, or check that a matching slot exists"
        )


class PoolShutdown(ClaudePoolError):
    """The pool is draining or closed, and accepts no new work."""

    def __init__(self, detail: str = "the pool is draining or closed") -> None:
        super().__init__(f"{detail}; no new work is accepted")


class ScalingError(ClaudePoolError):
    """A slot count outside ``min_slots..max_slots`` was asked for."""

    def __init__(self, requested: int, min_slots: int, max_slots: int) -> None:
        self.requested = requested
        self.min_slots = min_slots
        self.max_slots = max_slots
        super().__init__(
            f"cannot have {requested} slots: scaling allows {min_slots}..{max_slots}; "
            "change scaling.min_slots/max_slots to go further"
        )


class TaskTimeout(ClaudePoolError):
    """Task ``task_id`` did not finish within ``timeout_secs``."""

    def __init__(self, task_id: str, timeout_secs: float) -> None:
        self.task_id = task_id
        self.timeout_secs = timeout_secs
        super().__init__(f"task {task_id} did not finish within {timeout_secs:g}s")


class PermissionPromptDetected(ClaudePoolError):
    """Claude Code stopped to ask for permission to use ``tool_name``, in a run where no one
    can answer."""

    def __init__(self, tool_name: str, detail: str = "") -> None:
        self.tool_name = tool_name
        self.detail = detail
        super().__init__(
            f"Claude Code needed permission to use {tool_name!r} and no one could grant it"
            f"{': ' + detail if detail else ''}; allow it with allowed_tools=[{tool_name!r}] "
            "or choose a permission mode that permits it (e.g. acceptEdits, bypassPermissions)"
        )


class ClaudeCliError(ClaudePoolError):
    """The Claude Code CLI failed.

    ``command`` is the command line with secrets redacted; ``stderr`` is its tail.
    """

    def __init__(
        self, message: str, *, exit_code: int | None, stderr: str, command: str | None
    ) -> None:
        self.exit_code = exit_code
        self.stderr = stderr
        self.command = command
        super().__init__(message)


class ClaudeCliNotFound(ClaudeCliError):
    """No Claude Code CLI was found to run (or the one configured cannot be started)."""

    def __init__(self, searched: str) -> None:
        super().__init__(
            f"the Claude Code CLI was not found ({searched}); run `claude-pool install-cli` "
            "(it installs the version claude-pool is tested with) or set CLAUDE_POOL_CLAUDE_BIN",
            exit_code=None,
            stderr="",
            command=None,
        )


class ClaudeCliTooOld(ClaudeCliError):
    """The Claude Code CLI is version ``found``, older than the ``minimum`` claude-pool drives."""

    def __init__(self, path: str, found: str, minimum: str) -> None:
        self.found = found
        self.minimum = minimum
        super().__init__(
            f"the Claude Code CLI at {path} is version {found}, older than the {minimum} this "
            "pool needs; upgrade it with `npm install -g @anthropic-ai/claude-code@latest`",
            exit_code=None,
            stderr="",
            command=path,
        )


class ClaudeCliInstallError(ClaudeCliError):
    """The pinned Claude Code CLI could not be installed: npm is missing, or ``npm install``
    failed (``command``, ``exit_code`` and ``stderr`` say how)."""

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        stderr: str = "",
        command: str | None = None,
    ) -> None:
        super().__init__(message, exit_code=exit_code, stderr=stderr, command=command)


class StoreError(ClaudePoolError):
    """The store failed (database unreachable, corrupt, locked...)."""


class StoreDamaged(StoreError):
    """The store's file is damaged (a corrupt page) or is not a claude-pool store: retrying
    cannot help. A pool that meets it stops taking work (see ``Pool.failure``)."""


class StoreNotFound(StoreError):
    """A command that only reads or changes what is stored found no store where it was
    pointed (``where``), and set none up: nothing has been queued there."""

    def __init__(self, message: str, *, where: str) -> None:
        super().__init__(message)
        self.where = where


class WorktreeError(ClaudePoolError):
    """A git worktree or clone could not be created, inspected or removed.

    ``path`` is the directory concerned, ``command`` the git command that failed (if any) and
    ``stderr`` its error output.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        command: str | None = None,
        stderr: str = "",
    ) -> None:
        self.path = path
        self.command = command
        self.stderr = stderr
        super().__init__(message)


class ChainNotFound(ClaudePoolError):
    """No chain has the id ``chain_id``."""

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        super().__init__(f"no chain with id {chain_id!r}; list chains to see the known ids")


__all__ = [
    "BudgetExhausted",
    "ChainNotFound",
    "ClaudeCliError",
    "ClaudeCliInstallError",
    "ClaudeCliNotFound",
    "ClaudeCliTooOld",
    "ClaudePoolError",
    "ConfigError",
    "InvalidTaskState",
    "NoSlotAvailable",
    "PermissionPromptDetected",
    "PoolShutdown",
    "ScalingError",
    "SlotNotFound",
    "StoreError",
    "TaskNotFound",
    "TaskTimeout",
    "WorktreeError",
]
