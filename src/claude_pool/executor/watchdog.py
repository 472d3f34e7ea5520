"""The watchdog of one pool process: when it dies, everything its CLIs started dies too.

A pool process killed outright (SIGKILL, the OOM killer) runs no teardown. Its CLIs die with
it (``PR_SET_PDEATHSIG``), but the commands their Bash tools started run in sessions of their
own and would live on. So the first CLI a pool process starts also starts this watchdog, a
small separate process, run as a script with the standard library only
(``python -S watchdog.py <owner>``, a few milliseconds to start). It waits for its parent, the
pool process, to go away — the kernel tells it (``PR_SET_PDEATHSIG`` with SIGTERM), and it
also checks its parent every second in case the signal was tied to a thread that ended — then
kills every process whose environment carries a marker of that pool process (see
:mod:`claude_pool.executor.orphans`): SIGTERM, then SIGKILL for what is still there after a
grace period. Then it exits. While the pool lives it does nothing but wait.

This file must not import claude_pool: it runs without the package.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

MARKER_ENV = "CLAUDE_POOL_PROCESS"
_PR_SET_PDEATHSIG = 1
_CHECK_SECS = 1.0
_GRACE_SECS = 2.0


def marked(owner: str) -> list[int]:
    """Live processes whose marker names the pool process ``owner`` (``pid:start``)."""
    prefix = f"{MARKER_ENV}={owner}:".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if any(item.startswith(prefix) for item in environ.split(b"\0")):
            found.append(int(name))
    return found


def end_all(owner: str, grace: float = _GRACE_SECS) -> list[int]:
    """SIGTERM every process of ``owner``'s, then SIGKILL those left after ``grace``."""
    targets = marked(owner)
    for pid in targets:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and marked(owner):
        time.sleep(0.05)
    for pid in marked(owner):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return targets


def main(argv: list[str]) -> int:
    owner = argv[1]
    parent = int(owner.partition(":")[0])
    woken = []
    signal.signal(signal.SIGTERM, lambda *_: woken.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the pool is not ours
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    while os.getppid() == parent:
        time.sleep(_CHECK_SECS)  # a signal ends the sleep early
        if woken and os.getppid() == parent:
            return 0  # told to stop while the pool lives: not ours to kill anything
    end_all(owner)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
