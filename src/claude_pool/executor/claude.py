"""The real executor: runs tasks on the Claude Code CLI over its stream-json protocol.

Every slot keeps one warm CLI process, fed prompt after prompt over stdin, so a task costs one
API round trip instead of a process start. A task that needs a new conversation (an ephemeral
slot's, a ``fresh_session`` one) gets it in the live process with ``/clear`` and a rewind of
the CLI's record of that command, which take a few milliseconds against most of a CPU-second
for a new process. The process is replaced (resuming
the conversation with ``--resume``) when a task needs flags it was not started with, another
directory, a budget cap other than what the process still allows (``--max-budget-usd`` is a
process flag, counted from the process start or the last ``/clear``: :meth:`budget_left` tells
the pool what a task can get without a new process), or when it died. Model and
permission-mode changes are made in place with control requests when the CLI accepts them.
One-off tasks (another directory than the slot's) get a process of their own that ends with
the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from claude_pool.config import EffectiveConfig
from claude_pool.errors import ClaudeCliError, ClaudeCliNotFound, ClaudeCliTooOld
from claude_pool.executor.argv import build_args, mcp_config_document
from claude_pool.executor.base import (
    EventCallback,
    EventKind,
    ExecutionRequest,
    ExecutorEvent,
    SlotStart,
)
from claude_pool.executor.process import CliProcess, ProcessGone, child_env
from claude_pool.executor.protocol import (
    AUTH_FAILED_MESSAGE,
    CLEAR_COMMAND,
    TurnTracker,
    budget_spend_usd,
    clear_caveat_uuid,
    control_response_of,
    encode_control_error,
    encode_control_request,
    encode_permission_denial,
    encode_user_message,
    is_auth_failure,
    permission_prompt_in,
    plural,
    result_to_task_result,
    task_cost_usd,
)
from claude_pool.redaction import redact
from claude_pool.types import PermissionMode, SlotId, TaskResult, usd_to_microdollars

logger = logging.getLogger(__name__)

MINIMUM_CLI_VERSION = "2.1.0"
"""Oldest Claude Code CLI accepted: stream-json control requests, ``--json-schema``,
``--max-budget-usd``, ``--tools`` and ``api_retry`` events are all there from 2.1 on (the test
suite pins 2.1.330)."""

_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_VERSION_CHECK_SECS = 30.0
_CONTROL_REPLY_SECS = 10.0
_ELIDE_ARG_CHARS = 200


def command_line(argv: list[str] | tuple[str, ...]) -> str:
    """A shell-quoted, secret-free rendering of ``argv`` for failure reports (long values —
    system prompts, schemas — are elided)."""
    shown = []
    for arg in argv:
        if len(arg) > _ELIDE_ARG_CHARS:
            arg = f"{arg[:80]}…(+{len(arg) - 80} chars)"
        shown.append(redact(arg))
    return shlex.join(shown)


def _parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION_RE.search(text)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


class _Outcome:
    """Why a task ended, and whether its process can take another task."""

    OK = "ok"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    AUTH_FAILED = "auth_failed"
    DIED = "died"


class _AuthFailed(Exception):
    pass


class _ProcessEnded(Exception):
    pass


@dataclass
class _SlotState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    process: CliProcess | None = None
    key: tuple[str, ...] = ()
    """The live process's arguments apart from ``--resume`` and ``--max-budget-usd``."""
    budget_usd: float | None = None
    """The live process's ``--max-budget-usd``."""
    budget_spent_usd: float | None = None
    """What the live process spent since it started or last ran ``/clear``: what the CLI
    counts against ``budget_usd`` (None when that is not known exactly)."""
    config: EffectiveConfig | None = None
    session_id: str | None = None
    """The conversation the live process holds; None while it has not run a task (a process
    started without ``--resume``)."""
    tasks_run: int = 0
    """Tasks run in the live process's current conversation."""
    last_total_usd: float | None = None
    """The live process's last cumulative ``total_cost_usd`` (fallback cost arithmetic);
    None while not known (a ``--resume`` process starts from the session's earlier spend)."""
    crashed: bool = False
    """The slot's last process died or had to be killed: the next start is a restart."""
    last_outcome: str | None = None
    """How the slot's last task ended (names why a new process is started)."""
    temp_dir: Path | None = None
    stderr_sink: list[Any] = field(default_factory=list)
    """Where the live process's stderr lines go: ``[callback]`` of the task running now."""
    started_ahead: dict[str, Any] | None = None
    """The ``process_started`` data of a process started ahead of the slot's first task,
    which that task reports (so every process shows up in its first task's events)."""


class ClaudeCliExecutor:
    """Runs tasks on the Claude Code CLI (see the module docstring).

    ``env`` is added to the children's environment (``CLAUDECODE`` and
    ``CLAUDE_CODE_ENTRYPOINT`` are always dropped); ``work_dir`` holds slot-owned temp files
    (default: a private temp directory). A cancelled task gets ``interrupt_grace_secs`` to stop
    and report its spend after the interrupt request; teardown waits ``stdin_grace_secs`` after
    closing stdin and ``terminate_grace_secs`` after SIGTERM before SIGKILL. With
    ``clear_for_fresh_sessions`` off, a task that needs a new conversation always gets a new
    process; with it on, it gets ``/clear`` and a rewind of the CLI's record of that command
    (see :mod:`.protocol`), so that its first request carries nothing but the task either way.
    """

    def __init__(
        self,
        claude_bin: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        work_dir: Path | None = None,
        interrupt_grace_secs: float = 5.0,
        stdin_grace_secs: float = 5.0,
        terminate_grace_secs: float = 5.0,
        detect_permission_prompts: bool = True,
        clear_for_fresh_sessions: bool = True,
    ) -> None:
        self._claude_bin = os.fspath(claude_bin) if claude_bin is not None else None
        self._env = dict(env or {})
        self._work_dir = work_dir
        self._own_work_dir: Path | None = None
        self.interrupt_grace_secs = interrupt_grace_secs
        self.stdin_grace_secs = stdin_grace_secs
        self.terminate_grace_secs = terminate_grace_secs
        self.detect_permission_prompts = detect_permission_prompts
        self.clear_for_fresh_sessions = clear_for_fresh_sessions
        self._slots: dict[SlotId, _SlotState] = {}
        self._processes: set[CliProcess] = set()
        """Every process this executor started and has not torn down yet."""
        self._version: str | None = None
        self._check_lock = asyncio.Lock()
        self._request_seq = 0
        self._closed = False

    # ── checking the binary ─────────────────────────────────────────

    def _resolve_bin(self) -> str:
        if self._claude_bin is not None:
            found = shutil.which(self._claude_bin)
            if found is None:
                raise ClaudeCliNotFound(f"{self._claude_bin!r} is not an executable file")
            return found
        found = shutil.which("claude")
        if found is None:
            raise ClaudeCliNotFound("no `claude` on PATH")
        return found

    async def check(self) -> str:
        """Locate the CLI and verify its version; returns the version. Raises
        :class:`ClaudeCliNotFound` or :class:`ClaudeCliTooOld`."""
        async with self._check_lock:
            if self._version is not None:
                return self._version
            path = self._resolve_bin()
            try:
                proc = await CliProcess.spawn(
                    [path, "--version"], cwd=Path.cwd(), env=child_env(self._env)
                )
            except OSError as exc:
                raise ClaudeCliNotFound(f"{path} could not be started: {exc}") from exc
            try:
                text = ""
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_VERSION_CHECK_SECS):
                        text = (await proc.read_all()).decode(errors="replace")
            finally:
                await proc.kill()
            found = _parse_version(text)
            minimum = _parse_version(MINIMUM_CLI_VERSION)
            if found is None:
                raise ClaudeCliError(
                    f"could not read the version of the Claude Code CLI at {path} "
                    f"(`{path} --version` printed {text.strip()[:200]!r})",
                    exit_code=proc.returncode,
                    stderr=proc.stderr_tail(),
                    command=f"{path} --version",
                )
            version = ".".join(map(str, found))
            if minimum is not None and found < minimum:
                raise ClaudeCliTooOld(path, version, MINIMUM_CLI_VERSION)
            self._claude_bin = path
            self._version = version
            return version

    # ── the Executor protocol ───────────────────────────────────────

    async def execute(
        self, request: ExecutionRequest, on_event: EventCallback | None = None
    ) -> TaskResult:
        loop = asyncio.get_running_loop()
        started = loop.time()

        def elapsed_ms() -> int:
            return int((loop.time() - started) * 1000)

        try:
            await self.check()
        except ClaudeCliError as exc:
            return (
                TaskResult.failure(str(exc))
                .with_failure_details(exc.command, exc.exit_code, exc.stderr or None)
                .with_elapsed_ms(elapsed_ms())
            )
        if self._closed:
            return TaskResult.failure("the executor is closed; no new task can start")
        slot = self._slots.setdefault(request.slot_id, _SlotState())
        async with slot.lock:
            result = await self._run(slot, request, _Emitter(request, on_event), started)
        return result.with_elapsed_ms(elapsed_ms())

    async def start_slot(self, start: SlotStart) -> bool:
        """Start the slot's warm process ahead of its first task; True once it answered a
        control request (it is then ready to take a prompt)."""
        try:
            await self.check()
        except ClaudeCliError as exc:
            logger.warning("slot %s: cannot start its CLI process ahead: %s", start.slot_id, exc)
            return False
        if self._closed:
            return False
        slot = self._slots.setdefault(start.slot_id, _SlotState())
        async with slot.lock:
            if slot.process is not None:
                return slot.process.alive
            try:
                mcp_path = self._write_mcp_config(slot, start.slot_id, start.config)
            except OSError as exc:
                logger.warning("slot %s: could not write its MCP config: %s", start.slot_id, exc)
                return False
            args = build_args(
                start.config, resume_session_id=start.session_id, mcp_config_path=mcp_path
            )
            proc = await self._spawn(args, start.cwd, slot.stderr_sink)
            if isinstance(proc, TaskResult):
                logger.warning("slot %s: %s", start.slot_id, proc.output)
                return False
            try:
                ready = await self._control(proc, "get_session_cost", {})
            except BaseException:
                await self._close(proc, graceful=False)
                raise
            if not ready:
                logger.warning(
                    "slot %s: its CLI process did not answer after starting (%s)",
                    start.slot_id,
                    redact(proc.stderr_tail().strip()[-500:]) or "no stderr",
                )
                await self._close(proc, graceful=False)
                return False
            slot.process = proc
            slot.key = _key(start.config, mcp_path)
            slot.config, slot.session_id = start.config, start.session_id
            slot.tasks_run, slot.crashed = 0, False
            _new_budget_count(slot, start.config, resumed=start.session_id is not None)
            slot.started_ahead = {
                "pid": proc.pid,
                "restart": False,
                "resumed_session": start.session_id,
                "reason": "started_ahead",
            }
            return True

    def budget_left(self, slot_id: SlotId, *, fresh: bool) -> int | None:
        """What the slot's live process would let its next task spend under its
        ``--max-budget-usd``, in microdollars (a ``fresh`` task's after the ``/clear`` that
        resets the CLI's count); None without a live process with a cap, or when not known.
        A task whose cap is exactly this runs in that process."""
        slot = self._slots.get(slot_id)
        if slot is None or slot.process is None or not slot.process.alive:
            return None
        return self._budget_left(slot, fresh)

    def _budget_left(self, slot: _SlotState, fresh: bool) -> int | None:
        if slot.budget_usd is None:
            return None
        cap = usd_to_microdollars(slot.budget_usd)
        if fresh and (slot.session_id is not None or slot.tasks_run > 0):
            # A /clear starts the count again; without it the task gets a new process.
            return cap if self.clear_for_fresh_sessions else None
        if slot.budget_spent_usd is None:
            return None
        # Rounded down: the cap passed on is never below what the CLI still allows.
        return cap - math.floor(slot.budget_spent_usd * 1_000_000)

    async def release_slot(self, slot_id: SlotId) -> None:
        slot = self._slots.pop(slot_id, None)
        if slot is None:
            return
        async with slot.lock:
            await self._stop_slot_process(slot)
            if slot.temp_dir is not None:
                shutil.rmtree(slot.temp_dir, ignore_errors=True)

    async def aclose(self) -> None:
        self._closed = True
        # Running tasks hold their slot's lock: end every process first (their tasks then fail
        # at once), then clean the slots up.
        live = [p for p in self._processes if p.returncode is None]
        await asyncio.gather(*(self._close(p, graceful=True) for p in live))
        for slot_id in list(self._slots):
            await self.release_slot(slot_id)
        if self._own_work_dir is not None:
            shutil.rmtree(self._own_work_dir, ignore_errors=True)
            self._own_work_dir = None

    # ── running a task ──────────────────────────────────────────────

    async def _run(
        self, slot: _SlotState, request: ExecutionRequest, emit: _Emitter, started: float
    ) -> TaskResult:
        config = request.config
        try:
            mcp_path = self._write_mcp_config(slot, request.slot_id, config)
        except OSError as exc:
            return TaskResult.failure(f"could not write the slot's MCP config file: {exc}")
        run = self._run_one_off if request.one_off else self._run_in_slot
        result = await run(slot, request, emit, mcp_path)
        if request.session_id and _lost_session(result) and not request.cancel.is_set():
            # The conversation was never saved (its first turn died, or the CLI's files are
            # gone): carry on in a new one rather than failing every task of the slot.
            logger.warning(
                "slot %s: session %s cannot be resumed (%s); starting a new conversation",
                request.slot_id,
                request.session_id,
                result.output[:200],
            )
            await self._stop_slot_process(slot, graceful=False)
            result = await run(slot, replace(request, session_id=None), emit, mcp_path)
        return result

    async def _run_one_off(
        self,
        slot: _SlotState,
        request: ExecutionRequest,
        emit: _Emitter,
        mcp_path: Path | None,
    ) -> TaskResult:
        args = build_args(
            request.config, resume_session_id=request.session_id, mcp_config_path=mcp_path
        )
        sink: list[Any] = []
        proc_or_failure = await self._spawn(args, request.cwd, sink)
        if isinstance(proc_or_failure, TaskResult):
            return proc_or_failure
        proc = proc_or_failure
        try:
            emit(
                EventKind.PROCESS_STARTED,
                {
                    "pid": proc.pid,
                    "restart": False,
                    "resumed_session": request.session_id,
                    "reason": "one_off",
                },
            )
            result, outcome = await self._run_task(
                proc, request, emit, sink, TurnTracker(), previous_total=None
            )
            if outcome == _Outcome.DIED:
                _emit_exit(emit, proc, result)
            return result
        finally:
            await self._close(proc, graceful=True)

    async def _run_in_slot(
        self,
        slot: _SlotState,
        request: ExecutionRequest,
        emit: _Emitter,
        mcp_path: Path | None,
    ) -> TaskResult:
        config = request.config
        if slot.started_ahead is not None:
            emit(EventKind.PROCESS_STARTED, slot.started_ahead)
            slot.started_ahead = None
        key = _key(config, mcp_path)
        reason = await self._reuse_or_reason(slot, request, key, emit)
        if reason is not None:
            await self._stop_slot_process(slot)
            args = build_args(
                config, resume_session_id=request.session_id, mcp_config_path=mcp_path
            )
            proc_or_failure = await self._spawn(args, request.cwd, slot.stderr_sink)
            if isinstance(proc_or_failure, TaskResult):
                return proc_or_failure
            restart = slot.crashed
            slot.process, slot.key, slot.config = proc_or_failure, key, config
            slot.session_id, slot.tasks_run = request.session_id, 0
            _new_budget_count(slot, config, resumed=request.session_id is not None)
            slot.crashed = False
            emit(
                EventKind.PROCESS_STARTED,
                {
                    "pid": proc_or_failure.pid,
                    "restart": restart,
                    "resumed_session": request.session_id,
                    "reason": reason,
                },
            )
        proc = slot.process
        assert proc is not None
        tracker = TurnTracker()
        try:
            result, outcome = await self._run_task(
                proc, request, emit, slot.stderr_sink, tracker, previous_total=slot.last_total_usd
            )
        except asyncio.CancelledError:
            slot.last_outcome = "caller_cancelled"
            await self._stop_slot_process(slot, graceful=False)
            raise
        slot.last_outcome = outcome
        slot.tasks_run += 1
        if result.session_id:
            slot.session_id = result.session_id
        if outcome == _Outcome.OK:
            spent = budget_spend_usd(tracker.result_event, slot.last_total_usd)
            if slot.budget_spent_usd is not None:
                slot.budget_spent_usd = None if spent is None else slot.budget_spent_usd + spent
            slot.last_total_usd = tracker.total_cost_usd
        else:
            slot.crashed = outcome in (_Outcome.DIED, _Outcome.TIMED_OUT)
            if outcome == _Outcome.DIED:
                _emit_exit(emit, proc, result)
            await self._stop_slot_process(slot, graceful=outcome == _Outcome.CANCELLED)
        return result

    async def _reuse_or_reason(
        self, slot: _SlotState, request: ExecutionRequest, key: tuple[str, ...], emit: _Emitter
    ) -> str | None:
        """None when the slot's live process can take ``request`` (after starting a new
        conversation in it if the task needs one); else why a new process is needed."""
        proc = slot.process
        if proc is None:
            if slot.last_outcome in (None, _Outcome.OK):
                return "first"
            return f"after_{slot.last_outcome}"
        if not proc.alive:
            slot.crashed = True
            return "exited"
        if proc.cwd != request.cwd:
            return "cwd_changed"
        fresh = request.session_id is None
        if not fresh and request.session_id != slot.session_id:
            return "session_changed"
        cap = request.config.max_budget_usd
        if (cap is not None or slot.budget_usd is not None) and (
            cap is None or self._budget_left(slot, fresh) != usd_to_microdollars(cap)
        ):
            # The CLI's cap is a process flag, counted from the start or the last /clear:
            # the process can take the task only if what it lets it spend is the task's cap.
            return "budget"
        if key != slot.key and not self._fits_in_place(slot, request.config):
            return "config_changed"
        if fresh and (slot.session_id is not None or slot.tasks_run > 0):
            if not self.clear_for_fresh_sessions:
                return "fresh_session"
            if not await self._clear_conversation(slot, proc, emit):
                return "clear_failed"
        if key != slot.key:
            if not await self._change_in_place(slot, request.config):
                return "config_changed"
            slot.key, slot.config = key, request.config
        return None

    async def _clear_conversation(self, slot: _SlotState, proc: CliProcess, emit: _Emitter) -> bool:
        """Start a new conversation in the idle live process with ``/clear``, then rewind the
        CLI's record of the command out of it; True once the new conversation is empty (see
        :mod:`.protocol` for what the CLI prints and keeps)."""
        previous = slot.session_id
        session_id: str | None = None
        clear_uuid = str(uuid.uuid4())
        try:
            await proc.send(encode_user_message(CLEAR_COMMAND, uuid=clear_uuid))
            async with asyncio.timeout(_CONTROL_REPLY_SECS):
                while (event := await proc.read_event()) is not None:
                    etype = event.get("type")
                    if etype == "control_request":
                        await self._refuse_control_request(proc, event)
                    elif etype == "conversation_reset":
                        session_id = str(event.get("new_conversation_id") or "") or None
                    elif etype == "result":
                        session_id = str(event.get("session_id") or "") or session_id
                        if event.get("is_error") or session_id in (None, previous):
                            logger.warning("/clear failed in process %d: %.300r", proc.pid, event)
                            return False
                        total = event.get("total_cost_usd")
                        slot.last_total_usd = (
                            float(total) if isinstance(total, int | float) else 0.0
                        )
                        slot.budget_spent_usd = 0.0
                        break
                else:
                    return False
        except (ProcessGone, TimeoutError):
            return False
        assert session_id is not None
        # The process now holds the new conversation: if its record cannot be rewound, the
        # caller replaces the process, and nothing of the record reaches the API either.
        slot.session_id, slot.tasks_run = session_id, 0
        if not await self._rewind_clear_record(proc, session_id, clear_uuid):
            return False
        emit(
            EventKind.CONVERSATION_RESET,
            {"pid": proc.pid, "previous_session": previous, "session_id": session_id},
        )
        return True

    async def _rewind_clear_record(
        self, proc: CliProcess, session_id: str, clear_uuid: str
    ) -> bool:
        """Cut the CLI's record of ``/clear`` (caveat, command, output) out of the new
        conversation ``session_id``; True once the CLI says it did."""
        caveat = await asyncio.to_thread(self._find_clear_caveat, session_id, clear_uuid)
        if caveat is None:
            logger.warning(
                "process %d: no record of /clear in the transcript of session %s; the process "
                "is replaced",
                proc.pid,
                session_id,
            )
            return False
        reply = await self._control_reply(
            proc,
            "rewind_conversation",
            {"target_message_uuid": caveat, "last_seen_user_message_uuid": clear_uuid},
        )
        body = reply.get("response") if reply is not None else None
        if not isinstance(body, dict) or body.get("rewound") is not True:
            logger.warning("process %d: the CLI did not rewind /clear: %.300r", proc.pid, reply)
            return False
        return True

    def _find_clear_caveat(self, session_id: str, clear_uuid: str) -> str | None:
        env = child_env(self._env)
        config_dir = env.get("CLAUDE_CONFIG_DIR") or os.path.join(
            env.get("HOME") or os.path.expanduser("~"), ".claude"
        )
        for path in Path(config_dir, "projects").glob(f"*/{session_id}.jsonl"):
            try:
                with path.open(encoding="utf-8", errors="replace") as transcript:
                    found = clear_caveat_uuid(transcript, clear_uuid)
            except OSError:
                continue
            if found is not None:
                return found
        return None

    def _fits_in_place(self, slot: _SlotState, config: EffectiveConfig) -> bool:
        """Whether ``config`` differs from the live process's at most by what control requests
        may change (model, permission mode)."""
        live = slot.config
        if live is None or _neutral(live) != _neutral(config):
            return False
        return config.model == live.model or config.model is not None

    async def _change_in_place(self, slot: _SlotState, config: EffectiveConfig) -> bool:
        """Apply a model / permission-mode change with control requests when that is the only
        difference and the CLI accepts it (it refuses e.g. bypassPermissions in a process not
        launched with it)."""
        live = slot.config
        proc = slot.process
        assert live is not None
        assert proc is not None
        if _neutral(live) != _neutral(config):
            return False
        requests: list[tuple[str, dict[str, Any]]] = []
        if config.model != live.model:
            if config.model is None:
                return False
            requests.append(("set_model", {"model": config.model}))
        if config.permission_mode != live.permission_mode:
            requests.append(("set_permission_mode", {"mode": str(config.permission_mode)}))
        for subtype, fields in requests:
            if not await self._control(proc, subtype, fields):
                return False
        return True

    async def _control(self, proc: CliProcess, subtype: str, fields: dict[str, Any]) -> bool:
        """Send a control request to an idle process; True if it answered success."""
        return await self._control_reply(proc, subtype, fields) is not None

    async def _control_reply(
        self, proc: CliProcess, subtype: str, fields: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Send a control request to an idle process; its success answer, or None."""
        self._request_seq += 1
        request_id = f"pool-{self._request_seq}"
        try:
            await proc.send(encode_control_request(request_id, subtype, **fields))
            async with asyncio.timeout(_CONTROL_REPLY_SECS):
                while (event := await proc.read_event()) is not None:
                    reply = control_response_of(event)
                    if reply is not None and reply[0] == request_id:
                        if not reply[1]:
                            logger.info(
                                "CLI refused %s %s: %s", subtype, fields, reply[2].get("error")
                            )
                            return None
                        return reply[2]
        except (ProcessGone, TimeoutError):
            pass
        return None

    async def _spawn(self, args: list[str], cwd: Path, sink: list[Any]) -> CliProcess | TaskResult:
        assert self._claude_bin is not None
        argv = [self._claude_bin, *args]

        def on_stderr(line: str) -> None:
            for callback in sink:
                callback(line)

        try:
            proc = await CliProcess.spawn(
                argv, cwd=cwd, env=child_env(self._env), on_stderr_line=on_stderr
            )
            self._processes.add(proc)
            return proc
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not await asyncio.to_thread(cwd.is_dir):
                message = f"the slot's working directory {cwd} does not exist"
            elif isinstance(exc, FileNotFoundError):
                message = str(ClaudeCliNotFound(f"{self._claude_bin} disappeared"))
            else:
                message = f"could not start the Claude Code CLI: {exc}"
            return TaskResult.failure(message).with_failure_details(command_line(argv), None, None)

    async def _run_task(
        self,
        proc: CliProcess,
        request: ExecutionRequest,
        emit: _Emitter,
        sink: list[Any],
        tracker: TurnTracker,
        *,
        previous_total: float | None,
    ) -> tuple[TaskResult, str]:
        """Send the prompt and follow the task to its end (result, cancel, timeout, death)."""

        def on_stderr(line: str) -> None:
            emit(EventKind.STDERR, {"line": line})
            if self.detect_permission_prompts:
                found = permission_prompt_in(line)
                if found is not None:
                    tracker.denied_tools.setdefault(found[0], found[1])

        sink[:] = [on_stderr]
        reader = asyncio.create_task(self._read_result(proc, tracker, emit))
        cancelled = asyncio.create_task(request.cancel.wait())
        try:
            try:
                await proc.send(encode_user_message(request.prompt))
            except ProcessGone:
                reader.cancel()
            done, _ = await asyncio.wait(
                {reader, cancelled},
                timeout=request.timeout_secs,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if reader in done:
                return await self._finish(proc, request, tracker, reader, previous_total)
            stop = _Outcome.CANCELLED if cancelled in done else _Outcome.TIMED_OUT
            return await self._stop_task(proc, request, tracker, reader, previous_total, stop)
        except asyncio.CancelledError:
            # The caller gave up on the task: the process goes with it (shielded teardown).
            await self._close(proc, graceful=False)
            raise
        finally:
            sink.clear()
            for task in (reader, cancelled):
                task.cancel()
            await asyncio.gather(reader, cancelled, return_exceptions=True)

    async def _read_result(
        self, proc: CliProcess, tracker: TurnTracker, emit: _Emitter
    ) -> dict[str, Any]:
        while (event := await proc.read_event()) is not None:
            if event.get("type") == "control_request":
                await self._refuse_control_request(proc, event)
                continue
            if is_auth_failure(event):
                raise _AuthFailed
            for executor_event in tracker.events(event, emit.task_id, emit.slot_id):
                emit.send(executor_event)
            if event.get("type") == "result":
                return event
        raise _ProcessEnded

    async def _refuse_control_request(self, proc: CliProcess, event: dict[str, Any]) -> None:
        # The pool is not an SDK host: nobody can approve a tool or answer a question.
        request = event.get("request") if isinstance(event.get("request"), dict) else {}
        request_id = str(event.get("request_id", ""))
        assert isinstance(request, dict)
        with contextlib.suppress(ProcessGone):
            if request.get("subtype") == "can_use_tool":
                tool = request.get("tool_name", "?")
                await proc.send(
                    encode_permission_denial(request_id, f"no one can approve {tool} in a pool")
                )
            else:
                await proc.send(encode_control_error(request_id, "not supported by claude-pool"))

    async def _finish(
        self,
        proc: CliProcess,
        request: ExecutionRequest,
        tracker: TurnTracker,
        reader: asyncio.Task[dict[str, Any]],
        previous_total: float | None,
    ) -> tuple[TaskResult, str]:
        try:
            event = reader.result()
        except _AuthFailed:
            await self._close(proc, graceful=False)
            return self._failure(proc, AUTH_FAILED_MESSAGE, tracker, request), _Outcome.AUTH_FAILED
        except (_ProcessEnded, asyncio.CancelledError):
            code = await proc.wait(self.terminate_grace_secs)
            await self._close(proc, graceful=False)
            message = f"the Claude Code CLI process exited unexpectedly ({_describe_exit(code)})"
            if self._closed:
                message = "the executor was closed while the task ran (its CLI process was stopped)"
            tail = proc.stderr_tail().strip()
            if tail:
                message += f": {redact(tail[-2000:])}"
            return self._failure(proc, message, tracker, request), _Outcome.DIED
        result = self._map_result(event, tracker, request, previous_total)
        if not result.success:
            result = result.with_failure_details(
                command_line(proc.argv), proc.returncode, redact(proc.stderr_tail()) or None
            )
        return result, _Outcome.OK

    async def _stop_task(
        self,
        proc: CliProcess,
        request: ExecutionRequest,
        tracker: TurnTracker,
        reader: asyncio.Task[dict[str, Any]],
        previous_total: float | None,
        why: str,
    ) -> tuple[TaskResult, str]:
        """Interrupt the running turn to learn what it spent, then end the process."""
        self._request_seq += 1
        event: dict[str, Any] | None = None
        with contextlib.suppress(ProcessGone):
            await proc.send(encode_control_request(f"pool-{self._request_seq}", "interrupt"))
            done, _ = await asyncio.wait({reader}, timeout=self.interrupt_grace_secs)
            if reader in done and not reader.cancelled() and reader.exception() is None:
                event = reader.result()
        if why == _Outcome.TIMED_OUT:
            message = f"timed out after {request.timeout_secs:g}s"
            await self._close(proc, graceful=False)
        else:
            message = "cancelled while running"
            # An interrupted CLI is idle and exits on EOF; one that ignored the interrupt is
            # killed.
            await self._close(proc, graceful=event is not None)
        if so_far := tracker.output_so_far():
            message += f"; its output so far:\n\n{so_far}"
        if event is None:
            return self._failure(proc, message, tracker, request), why
        # The interrupted turn reported its spend: the CLI's own figure, not an estimate.
        result = self._failure(proc, message, tracker, request, estimate_cost=False)
        cost = task_cost_usd(event, previous_total)
        result = result.model_copy(
            update={
                "cost_microdollars": usd_to_microdollars(cost),
                "turns_used": int(event.get("num_turns") or tracker.turns),
            }
        )
        return result, why

    def _map_result(
        self,
        event: dict[str, Any],
        tracker: TurnTracker,
        request: ExecutionRequest,
        previous_total: float | None,
    ) -> TaskResult:
        return result_to_task_result(
            event,
            tracker,
            requested_model=request.config.model,
            structured=request.config.json_schema is not None,
            cost_usd=task_cost_usd(event, previous_total),
            elapsed_ms=0,
        )

    def _failure(
        self,
        proc: CliProcess,
        message: str,
        tracker: TurnTracker,
        request: ExecutionRequest,
        *,
        estimate_cost: bool = True,
    ) -> TaskResult:
        """A task that ended without a ``result`` event. Unless ``estimate_cost`` is off (the
        caller has the CLI's own figure), its cost is estimated from the token usage the
        stream reported, and the output says so: the API calls it made were paid for."""
        update: dict[str, Any] = {"turns_used": tracker.turns}
        message += tracker.retry_note()
        if estimate_cost and tracker.messages:
            cost = usd_to_microdollars(tracker.estimated_cost_usd())
            update["cost_microdollars"] = cost
            message = (
                f"{message}\n\n(cost ${cost / 1_000_000:.6f} is an estimate from the token "
                f"usage of {plural(len(tracker.messages), 'API message')} seen: the CLI ended "
                "without reporting its own total)"
            )
        result = TaskResult.failure(message).with_failure_details(
            command_line(proc.argv), proc.returncode, redact(proc.stderr_tail()) or None
        )
        if tracker.session_id:
            update["session_id"] = tracker.session_id
        model = tracker.served_model or tracker.init_model or request.config.model
        if model:
            update["model"] = model
        return result.model_copy(update=update)

    # ── processes and files ─────────────────────────────────────────

    async def _close(self, proc: CliProcess, *, graceful: bool) -> None:
        self._processes.discard(proc)
        if graceful:
            await proc.close(
                stdin_grace=self.stdin_grace_secs, terminate_grace=self.terminate_grace_secs
            )
        else:
            await proc.close(stdin_grace=0, terminate_grace=self.terminate_grace_secs)

    async def _stop_slot_process(self, slot: _SlotState, *, graceful: bool = True) -> None:
        proc, slot.process = slot.process, None
        slot.key, slot.config, slot.tasks_run, slot.last_total_usd = (), None, 0, None
        slot.budget_usd = slot.budget_spent_usd = None
        slot.started_ahead = None
        if proc is not None:
            await self._close(proc, graceful=graceful)

    def _write_mcp_config(
        self, slot: _SlotState, slot_id: SlotId, config: EffectiveConfig
    ) -> Path | None:
        document = mcp_config_document(config)
        if document is None:
            return None
        text = json.dumps(document, indent=2, sort_keys=True)
        if slot.temp_dir is None:
            slot.temp_dir = Path(tempfile.mkdtemp(prefix=f"{slot_id}-", dir=self._base_dir()))
        # Named by content: a live process keeps the file it was started with.
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        path = slot.temp_dir / f"mcp-config-{digest}.json"
        if not path.exists():
            path.write_text(text)
            path.chmod(0o600)
        return path

    def _base_dir(self) -> Path:
        if self._work_dir is not None:
            self._work_dir.mkdir(parents=True, exist_ok=True)
            return self._work_dir
        if self._own_work_dir is None:
            self._own_work_dir = Path(tempfile.mkdtemp(prefix="claude-pool-"))
        return self._own_work_dir


class _Emitter:
    """Sends events of one task to the caller's callback; a failing callback is logged, not
    allowed to break the task."""

    def __init__(self, request: ExecutionRequest, callback: EventCallback | None) -> None:
        self.task_id = request.task_id
        self.slot_id = request.slot_id
        self._callback = callback

    def __call__(self, kind: EventKind, data: dict[str, Any]) -> None:
        self.send(ExecutorEvent(kind=kind, task_id=self.task_id, slot_id=self.slot_id, data=data))

    def send(self, event: ExecutorEvent) -> None:
        if self._callback is None:
            return
        try:
            self._callback(event)
        except Exception:
            logger.exception("event callback failed for task %s", self.task_id)


def _neutral(config: EffectiveConfig) -> EffectiveConfig:
    """``config`` without what a control request can change in a live process, nor its
    budget (which :meth:`ClaudeCliExecutor._budget_left` compares)."""
    return dataclasses.replace(
        config, model=None, permission_mode=PermissionMode.PLAN, max_budget_usd=None
    )


def _key(config: EffectiveConfig, mcp_path: Path | None) -> tuple[str, ...]:
    """The arguments a process for ``config`` runs with, but ``--resume`` and
    ``--max-budget-usd``."""
    return tuple(build_args(replace(config, max_budget_usd=None), mcp_config_path=mcp_path))


def _new_budget_count(slot: _SlotState, config: EffectiveConfig, *, resumed: bool) -> None:
    """A new process for ``config``: the CLI counts its budget from 0 (a resumed session's
    earlier spend is not counted, though its ``total_cost_usd`` includes it)."""
    slot.budget_usd = config.max_budget_usd
    slot.budget_spent_usd = 0.0
    slot.last_total_usd = None if resumed else 0.0


def _lost_session(result: TaskResult) -> bool:
    return not result.success and "No conversation found with session ID" in result.output


def _emit_exit(emit: _Emitter, proc: CliProcess, result: TaskResult) -> None:
    emit(
        EventKind.PROCESS_EXITED,
        {"pid": proc.pid, "exit_code": proc.returncode, "reason": result.output[:500]},
    )


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}, exit code {code}"
    return f"exit code {code}"
