"""The `claude-pool` command line, run as a real process against one store, with a worker
executing tasks on the real Claude Code CLI against the mock API."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

import claude_pool
from claude_pool.cli import EXIT_NOT_FOUND, EXIT_REFUSED, app, first_sentence
from claude_pool.testing.damage import corrupt_table
from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    ErrorReply,
    MockAnthropicAPI,
    Reply,
    bash,
)
from claude_pool.testing.processes import pid_alive, processes_running, wait_until

pytestmark = pytest.mark.cli

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli_process_env(cli_env: dict[str, str], claude_bin: Path) -> dict[str, str]:
    env = {k: v for k, v in cli_env.items() if not k.startswith("CLAUDE_POOL_")}
    env["CLAUDE_POOL_CLAUDE_BIN"] = str(claude_bin)
    env["CLAUDE_POOL_MODEL"] = DEFAULT_MODEL
    env["CLAUDE_POOL_HEARTBEAT_SECS"] = "0.5"
    return env


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "pool.db"


@pytest.fixture
def cli(cli_process_env: dict[str, str], cli_cwd: Path, db: Path) -> Cli:
    """Run ``claude-pool *args --store <db>`` as a process (``store=None``: no --store)."""

    def run(
        *args: str,
        timeout: float = 60,
        store: Path | str | None = db,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        where = ["--store", str(store)] if store is not None else []
        return subprocess.run(
            [sys.executable, "-m", "claude_pool.cli", *args, *where],
            cwd=cli_cwd,
            env={**cli_process_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    return run


@pytest.fixture
def worker(
    cli_process_env: dict[str, str], cli_cwd: Path, db: Path, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log: IO[bytes] = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_pool.cli", "worker", "--store", str(db), "--slots", "2"],
        cwd=cli_cwd,
        # Its slots start their CLI processes with their first tasks, so that a test can tell
        # the process running a task by being the only one.
        env={**cli_process_env, "CLAUDE_POOL_START_SLOTS_AT_OPEN": "false"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # Ready once it says it serves the store; until then nothing it does can be timed.
    log_path = tmp_path / "worker.log"
    deadline = time.monotonic() + 60
    while b"slot(s) on" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the worker did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()


def test_submit_then_result_through_a_worker_in_another_process(
    cli: Cli, worker: subprocess.Popen[bytes], mock_api: MockAnthropicAPI
) -> None:
    mock_api.on(Reply("the answer is 42"), prompt="what is the answer")
    submitted = cli("submit", "what is the answer", "--tag", "demo", "--json")
    assert submitted.returncode == 0, submitted.stderr
    task_id = json.loads(submitted.stdout)["task_id"]

    waited = cli("result", task_id, "--wait", "--timeout", "60", "--json")
    assert waited.returncode == 0, waited.stderr
    record = json.loads(waited.stdout)
    assert record["state"] == "completed"
    assert record["result"]["output"] == "the answer is 42"
    assert record["tags"] == ["demo"]

    listed = cli("tasks", "--state", "completed", "--json")
    assert [t["id"] for t in json.loads(listed.stdout)] == [task_id]
    table = cli("tasks")
    assert task_id in table.stdout

    status = cli("status", "--json")
    data = json.loads(status.stdout)
    assert data["tasks"] == {"completed": 1}
    assert len(data["slots"]) == 2
    assert data["spend_microdollars"] > 0


async def test_cancel_from_another_shell_stops_a_task_running_in_the_worker(
    cli: Cli,
    worker: subprocess.Popen[bytes],
    mock_api: MockAnthropicAPI,
    claude_bin: Path,
    tmp_path: Path,
) -> None:
    mock_api.on(Reply("never seen", delay=60), prompt="very slow")
    task_id = cli("submit", "very slow").stdout.strip()
    try:
        await asyncio.to_thread(mock_api.wait_for_requests, 1, 60)
    except TimeoutError:
        pytest.fail(
            "the worker never sent the task's request\n"
            f"tasks: {cli('tasks', '--json').stdout}\n"
            f"worker log:\n{(tmp_path / 'worker.log').read_text()}"
        )
    running = processes_running(claude_bin, ancestor=worker.pid)
    assert len(running) == 1, "the worker runs the task on one CLI process"
    cancelled = cli("cancel", task_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    # The worker, not just the store, stops it: its CLI process ends.
    await wait_until(lambda: not any(pid_alive(p) for p in running), timeout=15)
    waited = cli("result", task_id, "--wait", "--timeout", "30", "--json")
    assert json.loads(waited.stdout)["state"] == "cancelled"
    assert waited.returncode == 1


def test_run_without_a_worker_runs_in_process(cli: Cli, mock_api: MockAnthropicAPI) -> None:
    mock_api.on(Reply("ran here"), prompt="just do it")
    done = cli("run", "just do it", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["output"] == "ran here"


def test_exit_codes_say_what_happened(cli: Cli) -> None:
    bad_config = cli("submit", "x", "--permission-mode", "sometimes")
    assert bad_config.returncode == 2
    assert "--permission-mode" in bad_config.stderr
    pending = cli("submit", "nobody runs this")
    missing = cli("result", "task-doesnotexist")
    assert missing.returncode == 3
    assert "no task with id" in missing.stderr
    waited = cli("result", pending.stdout.strip(), "--wait", "--timeout", "0.2")
    assert waited.returncode == 5


def test_worker_drains_on_sigterm(
    cli: Cli, worker: subprocess.Popen[bytes], mock_api: MockAnthropicAPI
) -> None:
    task_id = cli("submit", "quick one").stdout.strip()
    assert cli("result", task_id, "--wait", "--timeout", "60").returncode == 0
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    slots = json.loads(cli("status", "--json").stdout)["slots"]
    assert {s["state"] for s in slots} == {"stopped"}


def test_run_without_a_worker_leaves_other_queued_tasks_alone(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    """Regression: `claude-pool run` with no worker ran everything queued before its own task."""
    queued = [cli("submit", f"queued earlier {i}").stdout.strip() for i in range(2)]
    mock_api.on(Reply("just mine"), prompt="only my task")
    done = cli("run", "only my task", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["output"] == "just mine"
    states = {t["id"]: t["state"] for t in json.loads(cli("tasks", "--json").stdout)}
    assert [states[t] for t in queued] == ["pending", "pending"]
    assert [r.prompt for r in mock_api.main_requests] == ["only my task"]


async def test_status_in_another_shell_shows_the_workers_rate_limit_hold(
    cli: Cli, worker: subprocess.Popen[bytes], mock_api: MockAnthropicAPI
) -> None:
    """Regression: ``claude-pool status`` showed ``rate_limit: null`` while the worker's
    tasks were retrying 429s. The retried call is slow to answer, so the hold lasts past
    the announced retry time; status shows it until the call gets through."""
    mock_api.fail(429, times=1)
    mock_api.on(Reply("through at last", delay=6), prompt="storm")
    task_id = cli("submit", "storm").stdout.strip()
    await asyncio.to_thread(mock_api.wait_for_requests, 2, 60)  # the retry is under way
    during = json.loads(cli("status", "--json").stdout)
    hold = during["rate_limit"]
    assert hold is not None, during
    assert hold["status"] == 429
    assert hold["tasks"] == [task_id]
    assert "rate limited (HTTP 429)" in hold["message"]
    waited = cli("result", task_id, "--wait", "--timeout", "60", "--json")
    assert json.loads(waited.stdout)["result"]["output"] == "through at last"
    assert json.loads(cli("status", "--json").stdout)["rate_limit"] is None


# ── the command line itself: version, help, completion ────────────────


def test_version_prints_the_package_version(cli: Cli) -> None:
    shown = cli("--version", store=None)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"claude-pool {claude_pool.__version__}\n"


def test_top_level_help_gives_each_command_one_line_its_docstrings_first_sentence(
    cli: Cli,
) -> None:
    shown = cli("--help", store=None, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    panel = shown.stdout.split("Commands")[1]
    rows = [line.strip("│ ").rstrip() for line in panel.splitlines() if line.startswith("│")]
    expected = {}
    for command in app.registered_commands:
        assert command.callback is not None
        assert command.callback.__doc__
        name = command.name or command.callback.__name__
        expected[name] = first_sentence(command.callback.__doc__)
    shown_commands = {row.split()[0]: " ".join(row.split()[1:]) for row in rows}
    # No row is a continuation of another: each is a command and its one line.
    assert len(rows) == len(shown_commands) == len(expected) + 2  # and the two groups
    for name, line in expected.items():
        assert shown_commands[name] == line
        assert len(line) <= 100, f"{name}: make the first sentence of its docstring short"


def test_shell_completion_is_available_and_completes_commands(cli: Cli) -> None:
    script = cli("--show-completion", "bash", store=None)
    assert script.returncode == 0, script.stderr
    assert "_claude_pool_completion" in script.stdout
    completed = cli(
        store=None,
        env={"_CLAUDE_POOL_COMPLETE": "complete_bash", "COMP_WORDS": "claude-pool ta",
             "COMP_CWORD": "1"},
    )  # fmt: skip
    assert completed.stdout.split() == ["tasks"]


# ── tasks: what the table shows ─────────────────────────────────────────


def test_tasks_prints_prompts_literally_and_never_cuts_a_column(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    """Regression: `tasks` read prompts as Rich markup (`[bold]x[/bold]` vanished) and
    squeezed the state column to `comple…` in a narrow terminal."""
    mock_api.on(Reply("done"), prompt="first")
    assert cli("run", "first: use list[int] and [bold]x[/bold]").returncode == 0
    cancelled = cli("submit", "second: [[say:hello]] " + "and more " * 20).stdout.strip()
    assert cli("cancel", cancelled).returncode == 0
    narrow = cli("tasks", env={"COLUMNS": "40"})
    wide = cli("tasks", env={"COLUMNS": "300"})
    assert narrow.returncode == 0, narrow.stderr
    assert narrow.stdout == wide.stdout  # not a terminal: no width to depend on
    rows = [line for line in narrow.stdout.splitlines() if "task-" in line]
    assert [("cancelled" in row, "completed" in row) for row in rows] == [
        (True, False),
        (False, True),
    ], "newest first, states whole"
    assert "[[say:hello]] and more" in rows[0]
    assert rows[0].rstrip(" │").endswith("…")
    assert "use list[int] and [bold]x[/bold]" in rows[1]
    oldest = cli("tasks", "--oldest-first")
    assert [row.split()[1] for row in oldest.stdout.splitlines() if "task-" in row] == [
        row.split()[1] for row in reversed(rows)
    ]


# ── a store that is not there ───────────────────────────────────────────


@pytest.mark.parametrize(
    "command",
    [
        ["tasks"],
        ["status"],
        ["metrics"],
        ["watch"],
        ["result", "task-0123456789abcdef"],
        ["cancel", "task-0123456789abcdef"],
        ["requeue", "task-0123456789abcdef"],
        ["approve", "task-0123456789abcdef"],
        ["reject", "task-0123456789abcdef", "--feedback", "no"],
    ],
)
def test_reading_a_store_that_does_not_exist_says_so_and_creates_nothing(
    cli: Cli, tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "elsewhere" / "pool.db"
    done = cli(*command, store=missing)
    assert done.returncode == EXIT_NOT_FOUND
    assert f"no store at {missing}; nothing has been queued there" in done.stderr
    assert not missing.parent.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("command", [["status"], ["tasks"], ["result", "task-0123456789abcdef"]])
def test_reading_a_postgres_schema_that_does_not_exist_says_so_and_creates_nothing(
    cli: Cli, postgres_url: str, command: list[str]
) -> None:
    """Regression: ``status --store postgresql://...?schema=typo`` set up an empty store in a
    new schema ``typo``."""
    import psycopg

    from claude_pool.store.postgres import split_store_url

    done = cli(*command, store=postgres_url)
    conninfo, schema = split_store_url(postgres_url)
    assert done.returncode == EXIT_NOT_FOUND, done.stderr
    assert f"schema {schema} does not exist, so nothing has been queued there" in done.stderr
    with psycopg.connect(conninfo) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        assert found.fetchone() is None, "the schema was created"


def test_an_in_memory_store_can_always_be_read(cli: Cli) -> None:
    listed = cli("tasks", "--json", store=":memory:")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


# ── one-off commands start fresh conversations ──────────────────────────


def test_runs_one_after_another_each_start_a_fresh_conversation(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    """Regression: three `claude-pool run`s carried one conversation (the API got 2, then 4,
    then 6 messages)."""
    for word in ("one", "two", "three"):
        assert cli("run", f"say {word}").returncode == 0
    # Each request carries its own prompt and none of an earlier run's (a fresh conversation in
    # a live process may also carry the CLI's record of the /clear that started it).
    said = [[t for t in r.user_texts if t.startswith("say ")] for r in mock_api.main_requests]
    assert said == [["say one"], ["say two"], ["say three"]]
    assert cli("run", "say four", "--continue").returncode == 0
    last = mock_api.main_requests[-1].user_texts
    assert [t for t in last if t.startswith("say ")] == ["say three", "say four"]


# ── Ctrl-C ───────────────────────────────────────────────────────────────


def test_ctrl_c_on_run_cancels_the_task_at_once_and_shows_what_it_had(
    cli_process_env: dict[str, str], cli_cwd: Path, db: Path, mock_api: MockAnthropicAPI,
    claude_bin: Path,
) -> None:  # fmt: skip
    """Regression: Ctrl-C on an in-process `claude-pool run` printed nothing, waited about
    16 s and never showed the task's output."""
    mock_api.on(Reply(["Looking into it now.", bash("true")]), tool_result=False)
    mock_api.on(Reply("never seen", delay=60), tool_result=True)
    command = [sys.executable, "-m", "claude_pool.cli", "run", "very slow", "--store", str(db)]
    proc = subprocess.Popen(
        command, cwd=cli_cwd, env=cli_process_env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        mock_api.wait_for_requests(2, 60)  # the slow one is the second turn
        running = processes_running(claude_bin, ancestor=proc.pid)
        assert len(running) == 1, "the task runs on one CLI process of this command's"
        interrupted_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        took = time.monotonic() - interrupted_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert took < 10, f"Ctrl-C took {took:.1f}s to end the command"
    assert re.search(r"cancelled: task-\w+ \(spent \$\d+\.\d{6}\)", err), err
    task_id = re.search(r"cancelled: (task-\w+)", err)[1]  # type: ignore[index]
    assert f"{task_id} cancelled" in out
    assert "its output so far:\n\nLooking into it now." in out
    assert not any(pid_alive(p) for p in running), "the task's CLI process outlived the command"


# ── review, requeue, metrics ─────────────────────────────────────────────


def test_the_review_gate_works_from_the_command_line(
    cli: Cli, worker: subprocess.Popen[bytes], mock_api: MockAnthropicAPI
) -> None:
    mock_api.on(Reply("the short notes"), prompt=re.compile("make them shorter"))
    mock_api.on(Reply("the long notes"), prompt="write the notes")
    task_id = cli("submit", "write the notes", "--review").stdout.strip()
    held = cli("result", task_id, "--wait", "--timeout", "60", "--json")
    assert json.loads(held.stdout)["state"] == "pending_review"
    rejected = cli("reject", task_id, "--feedback", "make them shorter")
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout.strip() == f"{task_id} rejected: queued again for attempt 2 of 3"
    again = json.loads(cli("result", task_id, "--wait", "--timeout", "60", "--json").stdout)
    assert again["result"]["output"] == "the short notes"
    approved = cli("approve", task_id)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"{task_id} approved: completed"
    twice = cli("approve", task_id)
    assert twice.returncode == EXIT_REFUSED
    assert "pending_review" in twice.stderr
    assert cli("requeue", task_id).returncode == EXIT_REFUSED  # completed: nothing to redo


def test_requeue_runs_a_failed_task_again_from_the_command_line(
    cli: Cli, worker: subprocess.Popen[bytes], mock_api: MockAnthropicAPI
) -> None:
    refusing = [True]
    mock_api.on(
        lambda _: ErrorReply(400, message="no") if refusing[0] else Reply("second time lucky"),
        prompt="flaky job",
    )
    flaky = cli("submit", "flaky job").stdout.strip()
    assert cli("result", flaky, "--wait", "--timeout", "60").returncode == 1
    refusing[0] = False
    requeued = cli("requeue", flaky)
    assert requeued.returncode == 0, requeued.stderr
    assert requeued.stdout.strip() == f"{flaky} queued again"
    redone = json.loads(cli("result", flaky, "--wait", "--timeout", "60", "--json").stdout)
    assert redone["result"]["output"] == "second time lucky"


def test_metrics_show_counts_and_spend_and_take_a_time_window(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    assert cli("run", "count me", "--json").returncode == 0
    cancelled = cli("submit", "not me").stdout.strip()
    cli("cancel", cancelled)
    figures = json.loads(cli("metrics", "--json").stdout)
    assert (figures["total_tasks"], figures["completed_tasks"]) == (2, 1)
    assert figures["cancelled_tasks"] == 1
    assert figures["total_spend_microdollars"] > 0
    assert [m["model"] for m in figures["model_breakdown"]] == [DEFAULT_MODEL]
    recent = json.loads(cli("metrics", "--since", "1h", "--json").stdout)
    later = json.loads(cli("metrics", "--since", "2999-01-01", "--json").stdout)
    assert (recent["total_tasks"], later["total_tasks"]) == (2, 0)
    table = cli("metrics")
    assert table.returncode == 0, table.stderr
    assert "2 tasks: 1 completed, 0 failed, 1 cancelled" in table.stdout
    assert DEFAULT_MODEL in table.stdout
    bad = cli("metrics", "--since", "yesterday-ish")
    assert bad.returncode == 2
    assert "--since 'yesterday-ish'" in bad.stderr


# ── fan-out ──────────────────────────────────────────────────────────────


def test_fan_out_runs_prompts_from_a_file_and_prints_one_result_per_line(
    cli: Cli, mock_api: MockAnthropicAPI, tmp_path: Path
) -> None:
    mock_api.on(lambda r: Reply(f"answer to {r.prompt}\nsecond line"))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first question\n\nsecond question\nthird question\n")
    done = cli("fan-out", str(prompts), "--json")
    assert done.returncode == 0, done.stderr
    items = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(item["index"] for item in items) == [0, 1, 2]
    by_prompt = {item["prompt"]: item for item in items}
    assert by_prompt["second question"]["result"]["output"] == (
        "answer to second question\nsecond line"
    )
    assert all(item["success"] for item in items)
    assert "3 ok, 0 failed" in done.stderr
    plain = cli("fan-out", str(prompts))
    lines = sorted(plain.stdout.splitlines())
    assert [line.split()[:2] for line in lines] == [["1", "ok"], ["2", "ok"], ["3", "ok"]]
    assert lines[0].endswith(": answer to first question second line")


def test_fan_out_reads_standard_input_and_exits_1_when_one_fails(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    mock_api.on(ErrorReply(400, message="this one is refused"), prompt="bad one")
    mock_api.on(Reply("fine"), prompt="good one")
    done = cli("fan-out", "-", input="good one\nbad one\n")
    assert done.returncode == 1, done.stderr
    lines = sorted(done.stdout.splitlines())
    assert lines[0].startswith("1 ok task-")
    assert lines[0].endswith(": fine")
    assert lines[1].startswith("2 failed task-")
    assert "1 ok, 1 failed" in done.stderr
    empty = cli("fan-out", "-", input="\n\n")
    assert empty.returncode == 2
    assert "no prompts in standard input" in empty.stderr


def test_fan_out_after_holds_every_prompt_until_the_task_completed(
    cli: Cli, mock_api: MockAnthropicAPI, request: pytest.FixtureRequest
) -> None:
    mock_api.on(Reply("two findings"), prompt="review the module")
    mock_api.on(lambda r: Reply(f"did {r.prompt}"), prompt=re.compile(r"^fix "))
    first = cli("submit", "review the module", "--json")
    assert first.returncode == 0, first.stderr
    review = json.loads(first.stdout)["task_id"]
    request.getfixturevalue("worker")  # runs what is queued; the fan-out goes through it
    prompts = f"fix a: {{{{{review}.output}}}}\nfix b\n"
    done = cli("fan-out", "-", "--after", review, "--json", input=prompts)
    assert done.returncode == 0, done.stderr
    items = sorted(
        (json.loads(line) for line in done.stdout.splitlines()), key=lambda i: i["index"]
    )
    assert [i["result"]["output"] for i in items] == ["did fix a: two findings", "did fix b"]
    sent = [r.prompt for r in mock_api.main_requests]
    assert sent[0] == "review the module"
    assert sorted(sent[1:]) == ["fix a: two findings", "fix b"]
    unknown = cli("fan-out", "-", "--after", "task-unknown", input="fix c\n")
    assert unknown.returncode == 2
    assert "--after task-unknown" in unknown.stderr
    assert len(mock_api.main_requests) == 3  # nothing was queued


# ── watch ────────────────────────────────────────────────────────────────


def test_watch_replays_the_log_from_a_sequence_number_as_json_or_lines(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    mock_api.on(Reply("watched"), prompt="watch me")
    task_id = json.loads(cli("run", "watch me", "--json").stdout)["id"]
    replayed = cli("watch", "--after", "0", "--until-idle", "--json")
    assert replayed.returncode == 0, replayed.stderr
    events = [json.loads(line) for line in replayed.stdout.splitlines()]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    mine = [e["type"] for e in events if e.get("task_id") == task_id]
    assert mine[0] == "task_queued"
    assert mine[-1] == "task_finished"
    middle = seqs[len(seqs) // 2]
    resumed = [
        json.loads(line)
        for line in cli(
            "watch", "--after", str(middle), "--until-idle", "--json"
        ).stdout.splitlines()
    ]
    expected = [s for s in seqs if s > middle]
    assert [e["seq"] for e in resumed[: len(expected)]] == expected
    # Then the first watcher's own coming and going: another process's, to this one.
    assert {e["type"] for e in resumed[len(expected) :]} <= {"worker_joined", "worker_left"}
    lines = cli("watch", "--after", "0", "--until-idle").stdout.splitlines()
    assert any(f"{task_id} completed on slot" in line for line in lines)
    assert all(line.split()[0].isdigit() for line in lines)  # each starts with its seq
    counted = cli("watch", "--after", "0", "--count", "2", "--json")
    assert len(counted.stdout.splitlines()) == 2


def test_watch_follows_another_processes_work_live_until_the_pool_is_idle(
    cli: Cli, cli_process_env: dict[str, str], cli_cwd: Path, db: Path, tmp_path: Path,
    mock_api: MockAnthropicAPI,
) -> None:  # fmt: skip
    mock_api.on(Reply("done live"), prompt="live one")
    task_id = cli("submit", "live one").stdout.strip()
    watch_log = (tmp_path / "watch.err").open("w")
    watching = subprocess.Popen(
        [sys.executable, "-m", "claude_pool.cli", "watch", "--until-idle", "--store", str(db)],
        cwd=cli_cwd, env=cli_process_env, stdout=subprocess.PIPE, stderr=watch_log, text=True,
    )  # fmt: skip
    worker_proc = None
    try:
        deadline = time.monotonic() + 60
        while "watching" not in (tmp_path / "watch.err").read_text():
            assert watching.poll() is None, "watch ended before it started watching"
            assert time.monotonic() < deadline, "watch did not start"
            time.sleep(0.05)
        assert "pending 1" in (tmp_path / "watch.err").read_text()
        worker_proc = subprocess.Popen(
            [sys.executable, "-m", "claude_pool.cli", "worker", "--store", str(db)],
            cwd=cli_cwd, env=cli_process_env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = watching.communicate(timeout=60)
    finally:
        for proc in (watching, worker_proc):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        watch_log.close()
    assert watching.returncode == 0
    assert f"{task_id} claimed by slot" in out
    assert f"{task_id} completed on slot" in out


# ── worker logs ──────────────────────────────────────────────────────────


def test_a_worker_logs_each_task_as_json_lines_with_its_task_and_slot(
    cli: Cli, cli_process_env: dict[str, str], cli_cwd: Path, db: Path,
    mock_api: MockAnthropicAPI,
) -> None:  # fmt: skip
    mock_api.on(Reply("logged"), prompt="log me")
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_pool.cli", "worker", "--store", str(db), "--slots", "1",
         "--log-format", "json"],
        cwd=cli_cwd, env=cli_process_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        before = [json.loads(proc.stderr.readline())]
        while "slot(s) on" not in before[-1]["message"]:
            before.append(json.loads(proc.stderr.readline()))
        task_id = cli("submit", "log me").stdout.strip()
        assert cli("result", task_id, "--wait", "--timeout", "60").returncode == 0
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [*before, *(json.loads(line) for line in rest.splitlines())]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    about = [line for line in lines if line.get("task_id") == task_id]
    assert [line["level"] for line in about] == ["INFO", "INFO"]
    started, completed = about
    assert started["message"].startswith(f"task {task_id} started on slot {started['slot_id']}")
    assert completed["message"].startswith(f"task {task_id} completed on slot")
    assert completed["slot_id"] == started["slot_id"]
    assert completed["state"] == "completed"


def test_a_worker_logs_text_lines_at_info_by_default(
    cli: Cli, worker: subprocess.Popen[bytes], mock_api: MockAnthropicAPI, tmp_path: Path
) -> None:
    task_id = cli("submit", "plain log").stdout.strip()
    assert cli("result", task_id, "--wait", "--timeout", "60").returncode == 0
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    log = (tmp_path / "worker.log").read_text()
    assert re.search(rf" INFO claude_pool\.runner: task {task_id} started on slot slot-\w+", log)
    assert re.search(rf" INFO claude_pool\.runner: task {task_id} completed on slot", log)


# ── bad values ───────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "command",
    [
        ["submit", "x"],
        ["run", "x"],
        ["fan-out", "-"],
        ["skills", "run", "summarize", "target=x"],
        ["auto", "x"],
        ["worker"],
        ["serve"],
    ],
)
def test_a_bad_permission_mode_lists_the_allowed_ones(cli: Cli, command: list[str]) -> None:
    done = cli(*command, "--permission-mode", "yolo", input="")
    assert done.returncode == 2
    assert "'yolo' is not one of" in done.stderr
    assert "acceptEdits" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_priority_out_of_range_is_a_usage_error_not_an_overflow(cli: Cli) -> None:
    """Regression: `submit --priority -99999999999999999999` ended in an OverflowError."""
    done = cli("submit", "x", "--priority", "-99999999999999999999")
    assert done.returncode == 2
    assert "--priority" in done.stderr
    assert "-1000000" in done.stderr
    assert "Traceback" not in done.stderr
    assert cli("submit", "x", "--priority", "1000000").returncode == 0


def test_a_spent_budget_names_the_setting_the_command_line_uses(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    learn = cli("run", "what does a call cost", "--json")
    call = json.loads(learn.stdout)["result"]["cost_microdollars"]
    # Room for one more call, which the run spends; then less than a call is left.
    tiny = {"CLAUDE_POOL_BUDGET_USD": str(2.5 * call / 1_000_000)}
    spent = cli("run", "spend it", "--json", env=tiny)
    assert json.loads(spent.stdout)["result"]["cost_microdollars"] == call
    refused = cli("submit", "one more", env=tiny)
    assert refused.returncode == EXIT_REFUSED
    assert "budget_usd" in refused.stderr
    assert "budget_microdollars" in refused.stderr


async def test_a_worker_whose_store_goes_bad_stops_with_one_clear_error(
    cli: Cli,
    worker: subprocess.Popen[bytes],
    mock_api: MockAnthropicAPI,
    db: Path,
    claude_bin: Path,
    tmp_path: Path,
) -> None:
    """Regression: a worker whose store had a corrupt page went on running, failing every
    write; it stops now, says why once, and leaves no CLI process behind."""
    mock_api.on(Reply("too late", delay=3), prompt="doomed")
    cli("submit", "doomed")
    await asyncio.to_thread(mock_api.wait_for_requests, 1, 60)
    running = processes_running(claude_bin, ancestor=worker.pid)
    corrupt_table(db, "tasks")
    code = await asyncio.to_thread(worker.wait, 60)
    assert code == 1
    log = (tmp_path / "worker.log").read_text()
    damaged = [line for line in log.splitlines() if "is damaged" in line]
    assert damaged, log
    assert "Traceback" not in log, log
    await wait_until(lambda: not any(pid_alive(p) for p in running), timeout=15)


def test_submit_after_waits_for_the_task_and_uses_its_output(
    cli: Cli, mock_api: MockAnthropicAPI, request: pytest.FixtureRequest
) -> None:
    mock_api.on(Reply("three findings"), prompt="review the module")
    mock_api.on(Reply("fixed them"), prompt=re.compile(r"^fix "))
    first = cli("submit", "review the module", "--json")
    assert first.returncode == 0, first.stderr
    review = json.loads(first.stdout)["task_id"]
    second = cli("submit", f"fix {{{{{review}.output}}}}", "--after", review, "--json")
    assert second.returncode == 0, second.stderr
    fix = json.loads(second.stdout)["task_id"]
    listed = json.loads(cli("tasks", "--json").stdout)
    assert [(t["id"], t.get("waiting_for")) for t in listed] == [(fix, [review]), (review, None)]
    table = cli("tasks").stdout
    assert "waiting" in table
    assert f"{fix} waits for {review}" in cli("status").stdout
    refused = cli("submit", "later", "--after", "task-unknown")
    assert refused.returncode != 0
    assert "no task in this store" in refused.stderr

    request.getfixturevalue("worker")
    waited = cli("result", fix, "--wait", "--timeout", "60", "--json")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["result"]["output"] == "fixed them"
    assert [r.prompt for r in mock_api.main_requests] == ["review the module", "fix three findings"]


async def test_the_tasks_table_shows_verification_runs_and_plans_held_for_approval(
    cli: Cli, db: Path, cli_cwd: Path
) -> None:
    from claude_pool import Pool, PoolConfig
    from claude_pool.store import SqliteStore
    from claude_pool.testing.fake_executor import FakeExecutor

    once = "test -f checked || { touch checked; echo not yet; exit 3; }"
    pool = Pool(PoolConfig(), slots=1, store=SqliteStore(db), executor=FakeExecutor(), cwd=cli_cwd)
    async with pool:
        checked = await pool.submit("fix the flaky test", verify=once)
        planned = await pool.submit("add a cache", plan_first=True)
        for task in (checked, planned):
            await pool.wait(task, timeout=10)
    table = (await asyncio.to_thread(cli, "tasks")).stdout
    rows = {line.split()[1]: line for line in table.splitlines() if "task-" in line}
    assert "[checks ✗3 ✓] fix the flaky test" in rows[checked]
    assert "plan review" in rows[planned]
