"""Finding every process a CLI started, even after the pool that started it is gone.

The CLI runs in its own process group, but it starts each Bash tool command in a session of
its own, so no group signal reaches those; and a pool killed outright (SIGKILL) runs no
teardown at all (``PR_SET_PDEATHSIG`` then kills the CLI, not its tools). What every
descendant does keep is its environment. So each CLI is started with a marker variable naming
its pool process (pid and start time, since ids are reused) and itself:

- when a CLI has been torn down, whatever still carries its marker is killed;
- the first CLI a pool process starts also starts its watchdog (:mod:`watchdog`), which kills
  every process carrying a marker of that pool process as soon as the pool process dies,
  however it dies;
- the first CLI a pool process starts first kills every process whose marker names a pool
  process that no longer exists (the leftovers of a pool whose watchdog was killed too).

Linux only (``/proc``); elsewhere this does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

MARKER_ENV = "CLAUDE_POOL_PROCESS"
"""``<pool pid>:<pool start time>:<token of the CLI process>``, inherited by its descendants."""

_PROC = Path("/proc")


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if it does not exist (or is
    a zombie, or there is no ``/proc``)."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


_OWNER = f"{os.getpid()}:{start_time(os.getpid()) or 0}"


def new_marker() -> str:
    """A marker for one CLI process started by this pool process."""
    return f"{_OWNER}:{secrets.token_hex(6)}"


def _markers() -> dict[int, str]:
    """Every live process's marker, by pid."""
    found: dict[int, str] = {}
    if not _PROC.is_dir():
        return found
    prefix = f"{MARKER_ENV}=".encode()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                found[int(entry.name)] = item[len(prefix) :].decode(errors="replace")
                break
    return found


def _kill(pids: list[int]) -> list[int]:
    killed = []
    for pid in pids:
        if pid == os.getpid():
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def kill_marked(marker: str) -> list[int]:
    """Kill what is left of one CLI process: every process carrying its marker."""
    return _kill([pid for pid, found in _markers().items() if found == marker])


def reap_orphans() -> list[int]:
    """Kill every process started by a CLI of a pool process that no longer exists."""
    orphans = []
    alive: dict[str, bool] = {}
    for pid, marker in _markers().items():
        owner = marker.rsplit(":", 1)[0]
        if owner not in alive:
            owner_pid, _, owner_start = owner.partition(":")
            try:
                alive[owner] = start_time(int(owner_pid)) == int(owner_start)
            except ValueError:
                alive[owner] = True  # not ours to judge
        if not alive[owner]:
            orphans.append(pid)
    killed = _kill(orphans)
    if killed:
        logger.warning(
            "killed %d process(es) left behind by pool processes that died: %s",
            len(killed), killed,
        )  # fmt: skip
    return killed


_reaped = False
_reap_lock = threading.Lock()


def reap_orphans_once() -> None:
    """The first time this process starts a CLI: run :func:`reap_orphans` and start the
    watchdog that ends this process's CLIs and their tools if it dies."""
    global _reaped
    with _reap_lock:
        if not _reaped:
            _reaped = True
            reap_orphans()
            start_watchdog()


_WATCHDOG = Path(__file__).with_name("watchdog.py")
_watchdog: int | None = None
"""The watchdog's pid. A bare pid, not a ``Popen``: the watchdog is meant to outlive this
process's interpreter (it acts once the process is gone), which ``Popen`` would report as a
leak at exit."""


def _running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reaps it if it has ended
    except ChildProcessError:
        return False
    return done == 0


def start_watchdog() -> int | None:
    """Start this process's watchdog (once; Linux only) and return its pid; None when it
    cannot run here."""
    global _watchdog
    if _running(_watchdog):
        return _watchdog
    if not _PROC.is_dir() or not _WATCHDOG.is_file():
        return None
    env = {k: v for k, v in os.environ.items() if k != MARKER_ENV}
    quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    try:
        _watchdog = os.posix_spawn(
            sys.executable,
            [sys.executable, "-S", str(_WATCHDOG), _OWNER],
            env,
            file_actions=quiet,
            setsid=True,
        )
    except OSError as exc:
        logger.warning(
            "could not start the process watchdog (%s): a pool killed outright may leave "
            "tool processes behind until the next pool starts",
            exc,
        )
        return None
    logger.debug("started the process watchdog, pid %d", _watchdog)
    return _watchdog


def watchdog_pid() -> int | None:
    """The pid of this process's watchdog, while it runs."""
    return _watchdog if _running(_watchdog) else None
