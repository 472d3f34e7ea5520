"""Membership: which pool processes share the store, which of them are alive, and taking over
the work of those that died.

Each pool process (a *worker*: a ``Pool`` with or without slots, a ``claude-pool worker``, an
MCP server) has an id ``host:pid:<start ticks>.<random>`` (``host`` is :func:`this_host`: the
host name and a key of this machine's process space) and heartbeats into the store. A
worker is dead when, on this host, its process is gone (its start time tells it from a later
process with the same pid), or, on another host, when its heartbeat is older than
:meth:`Membership.stale_after_secs`. The running tasks of a dead worker are re-queued (or
failed, per the ``recovery`` setting) by whichever survivor notices first, in one atomic store
write that logs what happened.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from claude_pool.eventlog import EventLog
from claude_pool.events import (
    Event,
    TaskFinished,
    TaskRequeued,
    WorkerJoined,
    WorkerLeft,
    WorkerLost,
)
from claude_pool.executor.orphans import start_time
from claude_pool.store.base import RecoveryPolicy, Store
from claude_pool.types import RateLimitState, TaskId, TaskRecord, TaskState, now_ms

log = logging.getLogger(__name__)


@functools.cache
def this_host() -> str:
    """This machine, as worker ids and slot sessions record it: ``hostname/key``.

    Host names alone do not tell machines apart (containers and cloned VMs often share one,
    and many hosts are called ``localhost``), and on another machine a process id means
    nothing: the key names this process space, from the kernel's boot id and the process-id
    namespace. Two pool processes with the same key can see each other's processes; with
    different keys, only heartbeats tell whether the other is alive.
    """
    return f"{socket.gethostname()}/{_process_space_key()}"


def _process_space_key() -> str:
    parts: list[str] = []
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    if not parts:  # no /proc (macOS): the machine's hardware address
        parts.append(f"{uuid.getnode():012x}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:10]


def new_worker_id() -> str:
    """``host:pid:<start ticks>.<random>``: the start time tells this process from a later one
    that happens to get the same pid."""
    pid = os.getpid()
    return f"{this_host()}:{pid}:{start_time(pid) or 0}.{secrets.token_hex(3)}"


def alive_here(worker_id: str) -> bool | None:
    """Whether a pool process on this host is alive (decided by its process, whatever its
    heartbeat says); None for another host's (only the heartbeat tells)."""
    host, _, rest = worker_id.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != this_host() or not pid_text.isdigit():
        return None
    started = start_time(int(pid_text))
    recorded = token.partition(".")[0]
    if recorded.isdigit() and int(recorded) and started is not None:
        return started == int(recorded)
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_here(worker_id: str) -> bool:
    """True when the worker ran on this host and its process no longer exists."""
    return alive_here(worker_id) is False


class Membership:
    """This pool process's membership of the store."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        *,
        heartbeat_secs: float,
        recovery: RecoveryPolicy,
        worker_id: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.monotonic = monotonic
        """The clock heartbeats are timed by here (seconds, only differences count)."""
        self._events = events
        self.heartbeat_secs = heartbeat_secs
        self.recovery: RecoveryPolicy = recovery
        self.worker_id = worker_id or events.worker_id
        self._last_beat: float | None = None
        """When this process's last heartbeat was written (monotonic clock)."""

    @property
    def stale_after_secs(self) -> float:
        """How old a heartbeat may be before its worker counts as dead (on another host)."""
        return max(3 * self.heartbeat_secs, 1.0)

    async def join(self, slots: int) -> None:
        await self._store.heartbeat_worker(self.worker_id, now_ms())
        self._last_beat = self.monotonic()
        self._events.emit(WorkerJoined(slots=slots))

    async def leave(self) -> None:
        self._events.emit(WorkerLeft())
        await self._events.close()
        await self._store.remove_worker(self.worker_id)

    async def beat(self) -> list[TaskId]:
        """Heartbeat, then take over the running tasks of workers found dead. Returns the
        tasks taken over.

        When this process's own heartbeat is late (its previous one was written longer ago
        than a heartbeat may be old), it takes nothing over this time: what kept it from the
        store (a stalled machine, a slow or cut-off network path to the database) may have kept
        the others' heartbeats back too, and the first one through would otherwise take every
        other live worker for dead. It looks again at the next beat."""
        await self._store.heartbeat_worker(self.worker_id, now_ms())
        beaten, self._last_beat = self._last_beat, self.monotonic()
        if beaten is not None and self._last_beat - beaten > self.stale_after_secs:
            log.warning(
                "this pool process's heartbeat was %.1f s late (a busy machine or a slow "
                "path to the store); taking nothing over until the next one",
                self._last_beat - beaten - self.heartbeat_secs,
            )
            return []
        return await self.recover()

    async def recover(self) -> list[TaskId]:
        """Re-queue (or fail) the running tasks of dead workers, once, whoever notices."""
        now = now_ms()
        alive_since = now - int(self.stale_after_secs * 1000)
        owners = set(await self._store.stale_task_owners(now + 1))
        if not owners - {self.worker_id}:
            return []
        stale = set(await self._store.stale_task_owners(alive_since))
        # On this host a pool process is dead when its process is; a slow heartbeat (a busy
        # machine) does not make a live one dead. Elsewhere only the heartbeat can tell.
        dead = {
            w for w in owners
            if (here := alive_here(w)) is False or (here is None and w in stale)
        } - {self.worker_id}  # fmt: skip
        if not dead:
            return []
        policy = self.recovery
        lost: dict[str, list[TaskId]] = {}

        def logged(task_id: TaskId, worker: str, record: TaskRecord) -> Sequence[Event]:
            lost.setdefault(worker, []).append(task_id)
            reason = f"its pool process {worker} died"
            if record.state is TaskState.PENDING:
                return [TaskRequeued(task_id=task_id, reason=reason)]
            result = record.result
            return [
                TaskFinished(
                    task_id=task_id,
                    state=record.state,
                    success=False,
                    output=result.output if result else reason,
                )
            ]

        def change(batch: list[Event]) -> Awaitable[list[TaskId]]:
            def per_task(task_id: TaskId, worker: str, record: TaskRecord) -> Sequence[Event]:
                built = logged(task_id, worker, record)
                for event in built:
                    event.worker_id = self.worker_id
                batch.extend(built)
                return built

            return self._store.recover_tasks(dead, policy, now, events=per_task)

        recovered = await self._events.write(change)
        for worker in sorted(dead):
            await self._store.remove_worker(worker)
            self._events.emit(WorkerLost(lost_worker=worker, tasks=lost.get(worker, []),
                                         policy=policy))  # fmt: skip
        if recovered:
            log.warning(
                "recovered %d task(s) left running by dead pool process(es) %s (policy: %s)",
                len(recovered), sorted(dead), policy,
            )  # fmt: skip
        return recovered

    async def live_workers(self) -> set[str]:
        """Other pool processes that are alive: on this host, those whose process runs;
        elsewhere, those with a recent heartbeat."""
        fresh = set(await self._store.live_workers(now_ms() - int(self.stale_after_secs * 1000)))
        known = set(await self._store.live_workers(0))
        return {
            w for w in known | fresh
            if w != self.worker_id
            and ((here := alive_here(w)) is True or (here is None and w in fresh))
        }  # fmt: skip

    async def rate_limits(self) -> list[RateLimitState]:
        """The rate-limit holds other live pool processes on this store have published."""
        published = await self._store.rate_limits()
        published.pop(self.worker_id, None)
        if not published:
            return []
        alive = await self.live_workers()
        return [state for worker, state in published.items() if worker in alive]

    async def live_worker_with_slots(self) -> str | None:
        """Another live pool process on this store that runs slots (one that will execute
        what is queued), if there is one."""
        for worker in sorted(await self.live_workers()):
            if await self._store.list_slots(worker):
                return worker
        return None


__all__ = ["Membership", "alive_here", "dead_here", "new_worker_id"]
