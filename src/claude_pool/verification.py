"""Verification gates: the command a task's result must pass (``verify="make test"``).

After a task's Claude Code run succeeds, :func:`verify` runs the command through the shell in
the task's working directory (its worktree when isolated), its own process group, stdin
closed, for at most ``verify_timeout_secs``. Exit 0 passes. Anything else fails, and so does a
command that cannot start, is killed at its time limit, or is stopped because the task was
cancelled. The runner turns a failure into feedback for the same slot (see
:func:`feedback_prompt`), as a review rejection does, until ``max_rejections`` attempts are
used up.

Time: the task's own timeout bounds each Claude Code run; the verification has its own bound
and does not count toward it. Each run's time is recorded with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from claude_pool.types import VerificationRun, now_ms

OUTPUT_TAIL_CHARS = 4000
"""How much of a verification's output is kept (the end: where test runners summarise)."""

KILL_GRACE_SECS = 2.0
"""How long a stopped verification gets between SIGTERM and SIGKILL."""

_READ_CHUNK = 65536


def tail(text: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


async def verify(
    command: str, cwd: Path, timeout_secs: float, cancel: asyncio.Event | None = None
) -> VerificationRun:
    """Run ``command`` in ``cwd``; what it did. Never raises for the command's own failure."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        process = await asyncio.create_subprocess_shell(
            command,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return VerificationRun(
            command=command, exit_code=None, passed=False,
            output=f"the verification command could not start: {exc}", at_ms=now_ms(),
        )  # fmt: skip
    kept = bytearray()

    async def read() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(_READ_CHUNK):
            kept.extend(chunk)
            if len(kept) > 4 * OUTPUT_TAIL_CHARS:
                del kept[: len(kept) - 4 * OUTPUT_TAIL_CHARS]

    reader = asyncio.ensure_future(read())
    finished = asyncio.ensure_future(process.wait())
    stopped = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    waits = {finished, *([stopped] if stopped is not None else [])}
    timed_out = False
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout_secs, return_when="FIRST_COMPLETED")
        if finished not in done:
            timed_out = stopped is None or stopped not in done
            await asyncio.shield(_stop(process))
        # A background child may hold the output open after the command exited: give it a
        # moment, then stop the whole group.
        _, pending = await asyncio.wait({reader}, timeout=KILL_GRACE_SECS)
        if pending:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    finally:
        if stopped is not None:
            stopped.cancel()
        if not reader.done():
            reader.cancel()
        if not finished.done():
            await asyncio.shield(_stop(process))
    text = tail(kept.decode("utf-8", errors="replace"))
    code = process.returncode
    killed = timed_out or (stopped is not None and stopped.done() and not stopped.cancelled())
    if timed_out:
        text = tail(f"{text}\n[killed after {timeout_secs:g} s, its time limit]".lstrip())
    elif killed:
        text = tail(f"{text}\n[stopped: the task was cancelled]".lstrip())
    return VerificationRun(
        command=command,
        exit_code=None if killed else code,
        passed=not killed and code == 0,
        output=text,
        elapsed_ms=int((loop.time() - started) * 1000),
        at_ms=now_ms(),
        timed_out=timed_out,
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, then SIGKILL it if it lingers; reap it."""
    if process.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(process.wait(), KILL_GRACE_SECS)
            return
        except TimeoutError:
            continue
    await process.wait()


def feedback_prompt(original: str, run: VerificationRun, attempt: int, max_attempts: int) -> str:
    """The prompt that sends a task back after a failed verification (as a rejection does)."""
    how = "timed out" if run.timed_out else f"exited with {run.exit_code}"
    return (
        f"{original}\n\n---\nThe verification command `{run.command}` {how} after your "
        f"previous result (attempt {attempt} of {max_attempts}). Make it pass. Its output "
        f"ended with:\n{run.output}"
    )


__all__ = ["OUTPUT_TAIL_CHARS", "feedback_prompt", "tail", "verify"]
