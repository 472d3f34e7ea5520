"""One Claude Code CLI child process: spawn, NDJSON in and out, and a teardown that always ends it.

Every process runs in its own session (so its process group holds the CLI and whatever it
starts: tool commands, MCP servers), asks the kernel to kill it when the thread that started it
dies (``PR_SET_PDEATHSIG``, Linux), and is recorded in a registry that an ``atexit`` hook empties
and carries a marker in its environment (:mod:`claude_pool.executor.orphans`) by which its tool
processes are ended with it, and found and killed by the next pool if this one is killed.
Teardown escalates close stdin → wait → SIGTERM to the group → wait → SIGKILL → reap, with
explicit timeouts, and is shielded from cancellation.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from claude_pool.executor import orphans
from claude_pool.executor.protocol import parse_line

logger = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 64 * 1024
"""How much of a process's stderr is kept (the end of it)."""
_READ_CHUNK = 256 * 1024
_MAX_STDERR_LINE = 8 * 1024

# Inherited from a parent Claude Code session: with them set, a child CLI refuses to start.
DROPPED_ENV_VARS = ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT")

_PR_SET_PDEATHSIG = 1


def child_env(
    extra: Mapping[str, str] | None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a CLI child: ``base`` (default: ours) without the variables that
    make a nested CLI refuse to start, plus ``extra``."""
    env = dict(os.environ if base is None else base)
    for name in DROPPED_ENV_VARS:
        env.pop(name, None)
    env.update(extra or {})
    return env


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent goes away (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may already be gone between fork and prctl.
        if os.getppid() != parent:
            os._exit(1)

    return hook


class ProcessGone(Exception):
    """Writing to the process failed: it has exited (or closed its stdin)."""


class CliProcess:
    """A running CLI child. Create with :meth:`spawn`; always end with :meth:`close`."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        argv: Sequence[str],
        cwd: Path,
        on_stderr_line: Callable[[str], None] | None,
        marker: str | None = None,
    ) -> None:
        self._proc = proc
        self.marker = marker
        """Carried in the environment of the CLI and everything it starts."""
        self.argv: tuple[str, ...] = tuple(argv)
        self.cwd = cwd
        self.pid: int = proc.pid
        self.on_stderr_line = on_stderr_line
        self._buffer = bytearray()
        self._scan_from = 0
        self._eof = False
        self._stderr_tail = bytearray()
        self._stderr_task = asyncio.create_task(
            self._drain_stderr(), name=f"claude-stderr-{proc.pid}"
        )
        self._teardown: asyncio.Task[int | None] | None = None
        _LIVE[self.pid] = self

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> CliProcess:
        """Start ``argv`` in ``cwd`` in a new process group. Raises ``OSError`` if it cannot."""
        orphans.reap_orphans_once()
        marker = orphans.new_marker()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(cwd),
            env={**env, orphans.MARKER_ENV: marker},
            start_new_session=True,
            preexec_fn=_die_with_parent_hook(),
        )
        logger.debug("started CLI pid %d in %s", proc.pid, cwd)
        return cls(proc, argv, cwd, on_stderr_line, marker)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def alive(self) -> bool:
        return self._proc.returncode is None and self._teardown is None and not self._eof

    async def send(self, data: bytes) -> None:
        """Write ``data`` to stdin. Raises :class:`ProcessGone` if the process stopped reading."""
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            raise ProcessGone("stdin is closed")
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ProcessGone(str(exc)) from exc

    async def read_event(self) -> dict[str, Any] | None:
        """The next JSON event from stdout, or None at end of output. Lines may be any length."""
        while True:
            line = self._take_line()
            if line is not None:
                event = parse_line(line)
                if event is not None:
                    return event
                continue
            if self._eof:
                if self._buffer:
                    rest = bytes(self._buffer)
                    self._buffer.clear()
                    return parse_line(rest)
                return None
            stdout = self._proc.stdout
            assert stdout is not None
            chunk = await stdout.read(_READ_CHUNK)
            if not chunk:
                self._eof = True
            else:
                self._buffer += chunk

    async def read_all(self) -> bytes:
        """Everything the process writes to stdout until it closes it."""
        stdout = self._proc.stdout
        assert stdout is not None
        while not self._eof:
            chunk = await stdout.read(_READ_CHUNK)
            if not chunk:
                self._eof = True
            self._buffer += chunk
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def _take_line(self) -> bytes | None:
        index = self._buffer.find(b"\n", self._scan_from)
        if index < 0:
            self._scan_from = len(self._buffer)
            return None
        line = bytes(self._buffer[:index])
        del self._buffer[: index + 1]
        self._scan_from = 0
        return line

    async def _drain_stderr(self) -> None:
        stderr = self._proc.stderr
        assert stderr is not None
        pending = bytearray()
        while chunk := await stderr.read(_READ_CHUNK):
            self._stderr_tail += chunk
            if len(self._stderr_tail) > STDERR_TAIL_BYTES:
                del self._stderr_tail[: len(self._stderr_tail) - STDERR_TAIL_BYTES]
            pending += chunk
            *lines, rest = pending.split(b"\n")
            pending = bytearray(rest[-_MAX_STDERR_LINE:])
            for line in lines:
                self._stderr_line(bytes(line))
        if pending:
            self._stderr_line(bytes(pending))

    def _stderr_line(self, raw: bytes) -> None:
        line = raw[:_MAX_STDERR_LINE].decode(errors="replace").rstrip()
        if not line:
            return
        logger.debug("CLI pid %d stderr: %s", self.pid, line)
        if self.on_stderr_line is not None:
            try:
                self.on_stderr_line(line)
            except Exception:
                logger.exception("stderr callback failed")

    def stderr_tail(self) -> str:
        """The last :data:`STDERR_TAIL_BYTES` of stderr."""
        return self._stderr_tail.decode(errors="replace")

    async def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the process to exit; its exit code, or None."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._proc.wait()
        return self._proc.returncode

    async def close(
        self, *, stdin_grace: float = 5.0, terminate_grace: float = 5.0, kill_grace: float = 5.0
    ) -> int | None:
        """End the process: close stdin and wait ``stdin_grace``, SIGTERM the group and wait
        ``terminate_grace``, SIGKILL the group and reap. Shielded: if the caller is cancelled
        the teardown still finishes (it is bounded by the three graces) before
        ``CancelledError`` propagates. Returns the exit code. Safe to call more than once."""
        if self._teardown is None:
            self._teardown = asyncio.create_task(
                self._escalate(stdin_grace, terminate_grace, kill_grace),
                name=f"claude-teardown-{self.pid}",
            )
        teardown = self._teardown
        cancelled = False
        while not teardown.done():
            try:
                await asyncio.shield(teardown)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        return teardown.result()

    async def kill(self, *, kill_grace: float = 5.0) -> int | None:
        """End the process at once (SIGKILL to the group), shielded like :meth:`close`."""
        return await self.close(stdin_grace=0, terminate_grace=0, kill_grace=kill_grace)

    async def _escalate(
        self, stdin_grace: float, terminate_grace: float, kill_grace: float
    ) -> int | None:
        try:
            stdin = self._proc.stdin
            if stdin is not None and not stdin.is_closing():
                stdin.close()
            if self.returncode is None and stdin_grace > 0:
                await self.wait(stdin_grace)
            if self.returncode is None and terminate_grace > 0:
                self.signal_group(signal.SIGTERM)
                await self.wait(terminate_grace)
            if self.returncode is None:
                self.signal_group(signal.SIGKILL)
                await self.wait(kill_grace)
            # Whatever the CLI started (tool commands, MCP servers) goes with it.
            self.signal_group(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(kill_grace):
                    await self._stderr_task
            if not self._stderr_task.done():
                self._stderr_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._stderr_task
            if self.returncode is None:
                logger.error("CLI pid %d did not exit after SIGKILL", self.pid)
            return self.returncode
        finally:
            _LIVE.pop(self.pid, None)
            # The CLI's tool commands run in sessions of their own: end them too.
            if self.marker is not None:
                orphans.kill_marked(self.marker)

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process group (the CLI and everything it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


_LIVE: dict[int, CliProcess] = {}


def live_processes() -> list[CliProcess]:
    """Every CLI process started here and not yet torn down."""
    return list(_LIVE.values())


@atexit.register
def _kill_leftovers() -> None:
    # Last resort for an interpreter exiting without aclose(): nothing may outlive the pool.
    for pid in list(_LIVE):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    _LIVE.clear()
