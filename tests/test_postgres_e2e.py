"""Several `claude-pool worker` processes on one PostgreSQL store, end to end: the real Claude
Code CLI against the mock API, one worker killed outright mid-batch. Once with the workers as
plain processes of this machine, once with each in a network namespace and UTS namespace of
its own (its own host name and address, reaching PostgreSQL and the mock API over a veth
link): three machines, as far as claude-pool can tell, so a dead one is found by its expired
heartbeat alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from claude_pool import Pool, PoolConfig, TaskState
from claude_pool.store.postgres import PostgresStore
from claude_pool.testing.claude_cli import mock_cli_env
from claude_pool.testing.mock_api import DEFAULT_MODEL, MockAnthropicAPI, MockRequest, Reply
from claude_pool.testing.postgres import server_url
from claude_pool.testing.processes import ancestors, pid_alive, processes_running, wait_until
from claude_pool.types import TaskFilter, TaskId

pytestmark = [pytest.mark.cli, pytest.mark.postgres, pytest.mark.timeout(240)]

TASKS = 60
WORKERS = 3
ANSWER_DELAY_SECS = 0.4
"""How long each model turn takes: long enough that a worker always has tasks in flight."""

StartWorker = Callable[[int], subprocess.Popen[bytes]]
"""Start worker number k; returns its process."""


def answer(request: MockRequest) -> Reply:
    """Each task's own answer, from its prompt ``task N``."""
    match = re.search(r"task (\d+)", request.prompt)
    return Reply(f"answer {match[1]}" if match else "no task", delay=ANSWER_DELAY_SECS)


def worker_argv(url: str) -> list[str]:
    return [sys.executable, "-m", "claude_pool.cli", "worker", "--store", url, "--slots", "2",
            "--model", DEFAULT_MODEL, "--permission-mode", "dontAsk"]  # fmt: skip


def worker_env(
    cli_env: dict[str, str], claude_bin: Path, heartbeat_secs: float = 0.5
) -> dict[str, str]:
    env = {k: v for k, v in cli_env.items() if not k.startswith("CLAUDE_POOL_")}
    env["CLAUDE_POOL_CLAUDE_BIN"] = str(claude_bin)
    env["CLAUDE_POOL_HEARTBEAT_SECS"] = str(heartbeat_secs)
    return env


@contextlib.contextmanager
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Popen that logs to a file each and stops what is left at the end."""
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def popen(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        logs.append(log)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
        started.append(proc)
        return proc

    try:
        yield popen
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        for log in logs:
            log.close()


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (CLIs, their tools and helpers)."""
    found = {int(e.name) for e in Path("/proc").iterdir()
             if e.name.isdigit() and pid in ancestors(int(e.name))}  # fmt: skip
    return {p for p in found if pid_alive(p)}


def owner_pid(worker_id: str | None) -> int | None:
    """The process id in a worker id ``host:pid:start.random``."""
    parts = (worker_id or "").split(":")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None


async def kill_one_mid_batch(
    client_url: str, mock_api: MockAnthropicAPI, start_worker: StartWorker
) -> None:
    """The scenario: 60 tasks, three workers, the first SIGKILLed mid-batch."""
    mock_api.on(answer)
    client = Pool(PoolConfig(), slots=0, store=PostgresStore(client_url))
    await client.open()
    try:
        ids = [await client.submit(f"task {i}") for i in range(TASKS)]
        workers = [start_worker(k) for k in range(WORKERS)]
        victim = workers[0]

        async def victims_running() -> list[TaskId]:
            running = await client.list_tasks(TaskFilter(state=TaskState.RUNNING), limit=TASKS)
            mine = []
            for record in running:
                stored = await client.store.get_task(record.id)
                if stored is not None and owner_pid(stored.claimed_by) == victim.pid:
                    mine.append(record.id)
            return mine

        # Mid-batch: some work done, and the victim running tasks of its own.
        async with asyncio.timeout(90):
            while True:
                done = await client.list_tasks(TaskFilter(state=TaskState.COMPLETED), limit=TASKS)
                if len(done) >= TASKS // 5 and await victims_running():
                    break
                await asyncio.sleep(0.05)
        children = descendants(victim.pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        assert children, "the victim ran CLI processes"
        await wait_until(lambda: not any(pid_alive(p) for p in children), timeout=15)

        records = [await client.wait(task_id, timeout=120) for task_id in ids]
    finally:
        await client.close()

    assert [r.state for r in records] == [TaskState.COMPLETED] * TASKS, [
        (r.id, r.state, r.result and r.result.output, [a.reason for a in r.attempts])
        for r in records
        if r.state is not TaskState.COMPLETED
    ]
    for i, record in enumerate(records):
        assert record.result is not None
        assert record.result.output == f"answer {i}", "each task has its own answer"
    recovered = {r.id for r in records if r.attempts}
    assert recovered, "the dead worker's running tasks were taken over"
    for record in records:
        if record.id in recovered:
            (attempt,) = record.attempts  # re-run exactly once
            # Only tasks the dead worker was running are re-run.
            dead = re.fullmatch(r"its pool process (\S+) died while it ran", attempt.reason)
            assert dead is not None, attempt.reason
            assert owner_pid(dead[1]) == victim.pid
    asked = Counter(r.prompt for r in mock_api.main_requests)
    for i, record in enumerate(records):
        expected = {1, 2} if record.id in recovered else {1}
        assert asked[f"task {i}"] in expected, f"task {i} reached the model {asked[f'task {i}']}x"
    assert not any(pid_alive(p) for p in children), "nothing of the dead worker survives"
    assert all(w.poll() is None for w in workers[1:]), "the survivors kept running"


async def test_three_workers_finish_sixty_tasks_exactly_once_when_one_is_killed_mid_batch(
    postgres_url: str,
    mock_api: MockAnthropicAPI,
    cli_env: dict[str, str],
    claude_bin: Path,
    cli_cwd: Path,
    tmp_path: Path,
) -> None:
    env = worker_env(cli_env, claude_bin)
    with processes(tmp_path) as popen:
        await kill_one_mid_batch(
            postgres_url, mock_api, lambda k: popen(worker_argv(postgres_url), cwd=cli_cwd, env=env)
        )


# ── three "machines": network and UTS namespaces ────────────────────


def _netns_unavailable() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces and veth links needs root"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (iproute2, util-linux)"
    probe = f"cp{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def machines(count: int) -> Iterator[list[tuple[str, str]]]:
    """``count`` network namespaces, each linked to this one by a veth pair: yields
    ``(namespace, the address of this machine as seen from it)``."""
    token = secrets.token_hex(2)
    made: list[tuple[str, str]] = []
    try:
        for k in range(count):
            netns, here, there = f"cp{token}m{k}", f"cp{token}h{k}", f"cp{token}n{k}"
            _ip("netns", "add", netns)
            made.append((netns, here))
            _ip("link", "add", here, "type", "veth", "peer", "name", there)
            _ip("link", "set", there, "netns", netns)
            subnet = f"10.{200 + int(token[:2], 16) % 50}.{k}"
            _ip("addr", "add", f"{subnet}.1/24", "dev", here)
            _ip("link", "set", here, "up")
            _ip("addr", "add", f"{subnet}.2/24", "dev", there, netns=netns)
            _ip("link", "set", there, "up", netns=netns)
            _ip("link", "set", "lo", "up", netns=netns)
        yield [(netns, f"10.{200 + int(token[:2], 16) % 50}.{k}.1")
               for k, (netns, _) in enumerate(made)]  # fmt: skip
    finally:
        for netns, here in made:
            subprocess.run(["ip", "link", "del", here], capture_output=True)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)


_PROXY = """
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()

async def serve(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection(sys.argv[1], int(sys.argv[2]))
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

async def main():
    server = await asyncio.start_server(serve, host="0.0.0.0", port=0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


@contextlib.contextmanager
def tcp_proxy(target_host: str, target_port: int) -> Iterator[int]:
    """A TCP forwarder on every address of this machine to ``target`` (PostgreSQL listens on
    127.0.0.1 only); yields its port. A process of its own: forwarded by the test's event loop,
    every worker's traffic to the database (heartbeats included) stalled whenever the test
    process was busy, and a worker whose heartbeat got through first took the others for dead.
    """
    with subprocess.Popen(
        [sys.executable, "-c", _PROXY, target_host, str(target_port)],
        stdout=subprocess.PIPE, text=True,
    ) as proxy:  # fmt: skip
        try:
            assert proxy.stdout is not None
            yield int(proxy.stdout.readline())
        finally:
            proxy.kill()


async def test_three_workers_in_network_namespaces_recover_a_killed_one_by_heartbeat_expiry(
    postgres_url: str, cli_home: Path, claude_bin: Path, cli_cwd: Path, tmp_path: Path
) -> None:
    reason = _netns_unavailable()
    if reason is not None:
        pytest.skip(f"cannot give the workers machines of their own: {reason}")
    from psycopg.conninfo import conninfo_to_dict

    from claude_pool.store.postgres import split_store_url

    _, schema = split_store_url(postgres_url)
    server = conninfo_to_dict(server_url())
    address = (str(server.get("host", "127.0.0.1")), int(server.get("port", 5432)))
    with (
        MockAnthropicAPI(host="0.0.0.0") as mock_api,
        machines(WORKERS) as hosts,
        tcp_proxy(*address) as port,
        processes(tmp_path) as popen,
    ):

        def start(k: int) -> subprocess.Popen[bytes]:
            netns, here = hosts[k]
            database = server.get("dbname", "test")
            url = f"postgresql://{here}:{port}/{database}?schema={schema}"
            cli = mock_cli_env(f"http://{here}:{mock_api.port}", cli_home)
            # Its own host name too: a worker id names the machine it runs on.
            named = f'hostname "machine-{k}" && exec "$@"'
            argv = ["ip", "netns", "exec", netns, "unshare", "--uts",
                    "sh", "-c", named, "sh", *worker_argv(url)]  # fmt: skip
            # Found dead by heartbeat alone here: a beat every 2 s (found dead after 6 s of
            # silence). Workers starting their CLIs on this 2-core machine were seen beating
            # 2.7 s late: with 1 s beats (3 s) live workers were taken for dead.
            env = worker_env(cli, claude_bin, heartbeat_secs=2.0)
            return popen(argv, cwd=cli_cwd, env=env)

        await kill_one_mid_batch(postgres_url, mock_api, start)


async def test_the_command_line_finds_a_postgres_store_by_flag_environment_and_config_file(
    postgres_url: str,
    mock_api: MockAnthropicAPI,
    cli_env: dict[str, str],
    claude_bin: Path,
    cli_cwd: Path,
    tmp_path: Path,
) -> None:
    mock_api.on(Reply("the answer is 42"), prompt="what is the answer")
    env = worker_env(cli_env, claude_bin)
    (cli_cwd / "claude-pool.toml").write_text(f'store = "{postgres_url}"\n')

    def cli(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "claude_pool.cli", *args], cwd=cli_cwd,
            env={**env, **(extra or {})}, capture_output=True, text=True, timeout=90,
        )  # fmt: skip

    with processes(tmp_path) as popen:
        argv = [a for a in worker_argv(postgres_url) if a not in ("--store", postgres_url)]
        popen(argv, cwd=tmp_path, env={**env, "CLAUDE_POOL_STORE": postgres_url})  # environment
        submitted = cli("submit", "what is the answer", "--json", "--store", postgres_url)  # flag
        assert submitted.returncode == 0, submitted.stderr
        task_id = json.loads(submitted.stdout)["task_id"]
        waited = cli("result", task_id, "--wait", "--timeout", "60", "--json")  # config file
        assert waited.returncode == 0, waited.stderr
    record = json.loads(waited.stdout)
    assert record["state"] == "completed"
    assert record["result"]["output"] == "the answer is 42"


async def test_a_cancel_from_another_process_stops_the_workers_cli_within_two_seconds(
    postgres_url: str,
    mock_api: MockAnthropicAPI,
    cli_env: dict[str, str],
    claude_bin: Path,
    cli_cwd: Path,
    tmp_path: Path,
) -> None:
    mock_api.on(Reply("never seen", delay=60), prompt="very slow")
    env = worker_env(cli_env, claude_bin)
    client = Pool(PoolConfig(), slots=0, store=PostgresStore(postgres_url))
    await client.open()
    try:
        with processes(tmp_path) as popen:
            worker = popen(worker_argv(postgres_url), cwd=cli_cwd, env=env)
            task_id = await client.submit("very slow")
            await asyncio.to_thread(mock_api.wait_for_requests, 1, 60)
            # The task's CLI process is one of these (an idle slot may keep a warm one).
            clis = processes_running(claude_bin, ancestor=worker.pid)
            assert clis
            loop = asyncio.get_running_loop()
            sent = loop.time()
            record = await client.cancel(task_id)
            assert record.state is TaskState.CANCELLED
            # The worker hears of it through NOTIFY and stops the task's CLI process.
            await wait_until(lambda: not all(pid_alive(p) for p in clis), timeout=15)
            stopped_after = loop.time() - sent
    finally:
        await client.close()
    assert stopped_after < 2.0, f"the CLI stopped {stopped_after:.2f} s after the cancel"
