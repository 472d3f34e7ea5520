"""Looking at live processes from tests (Linux ``/proc``): did the pool leave anything behind?"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def ancestors(pid: int) -> set[int]:
    found = set()
    while pid > 1:
        fields = _stat_fields(pid)
        if fields is None:
            break
        pid = int(fields[1])
        found.add(pid)
    return found


def processes_running(binary: Path, ancestor: int | None = None) -> set[int]:
    """Live processes running ``binary`` (only descendants of ``ancestor``, if given: other
    tests on the machine may run the same binary at the same time)."""
    target = binary.resolve()
    found = set()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "exe")).resolve() != target:
                continue
        except OSError:
            continue
        pid = int(entry.name)
        if pid_alive(pid) and (ancestor is None or ancestor in ancestors(pid)):
            found.add(pid)
    return found


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` (for other processes there is no event to await), at most
    ``timeout`` seconds; raises ``TimeoutError``."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
