"""Secrets never reach a failure report: the command line and stderr tail of a failed run are
masked with detect-secrets' detectors plus the formats it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_pool import Pool, PoolConfig
from claude_pool.executor import ClaudeCliExecutor
from claude_pool.executor.claude import command_line
from claude_pool.redaction import MASK, redact
from claude_pool.store import MemoryStore
from claude_pool.testing.mock_api import DEFAULT_MODEL, MockAnthropicAPI

# Regression: these were left in clear in a failed task's command line and stderr tail (an AWS
# key and an sk-proj- key reached a TaskResult). Made-up values of the real formats.
SECRETS = {
    "GitHub classic token": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "GitHub fine-grained token": "github_pat_11ABCDEFG0" + "abcdefghij" * 7 + "X1",
    "AWS access key": "AKIA" + "Q3EGRJ4ZXW7NPLTM",
    "OpenAI project key": "sk-proj-" + "Zk3mP9qR2sT8vW1xY4zA6bC7dE0fG5hJ" * 2,
    "Anthropic key": "sk-ant-api03-" + "Xy7Kp2Lm9Nq4Rs6Tv8Wz1Ab3Cd5Ef0Gh",
    "Slack bot token": "xoxb-" + "123456789012-1234567890123-aBcDeFgHiJkLmNoPqRsTuVwX",
    "GitLab token": "glpat-" + "Rk8mZ2pQ7sW4tY9vB1nC",
    "Stripe live key": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
}
URL_PASSWORD = "hunter2-Secret"
URL = f"https://deploy:{URL_PASSWORD}@git.example.com/org/repo.git"


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_each_common_format_is_masked(kind: str) -> None:
    secret = SECRETS[kind]
    masked = redact(f"export VALUE={secret} # {kind}\nthen {secret}, again")
    assert secret not in masked
    assert secret[8:] not in masked, "no tail of the secret is left either"
    assert masked.count(MASK) >= 2
    assert masked.endswith(", again"), "the text around it is kept"


def test_the_password_of_a_url_is_masked_and_the_rest_kept() -> None:
    masked = redact(f"git clone {URL}")
    assert URL_PASSWORD not in masked
    assert masked == f"git clone https://deploy:{MASK}@git.example.com/org/repo.git"


def test_a_private_key_block_is_masked_whole() -> None:
    block = "\n".join(
        [
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXktdjEAAAAA",
            "QUFBQUFB",
            "-----END OPENSSH PRIVATE KEY-----",
        ]
    )
    masked = redact(f"key:\n{block}\nafter")
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in masked
    assert "QUFBQUFB" not in masked
    assert masked.endswith("\nafter")


def test_the_kind_of_key_stays_visible() -> None:
    assert redact(SECRETS["GitHub classic token"]) == f"ghp_{MASK}"
    assert redact(SECRETS["Slack bot token"]) == f"xoxb-{MASK}"


@pytest.mark.parametrize(
    "text",
    [
        "--model claude-sonnet-4-5 --permission-mode plan --max-turns 10",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b on main",
        "session 0c6f1a7e-3b5e-4c1c-9f7c-2a8f0d6b1e11 at 93.184.216.34:443",
        "/tmp/pytest-of-root/pytest-12/test_a_long_name0/cwd/src/claude_pool/pool.py:120",
        "https://api.anthropic.com/v1/messages returned 529",
        "task-5a4165133a567ffe failed after 3 turns",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_failed_command_line_is_masked() -> None:
    line = command_line(["claude", "--append-system-prompt", " ".join(SECRETS.values()), URL])
    for secret in [*SECRETS.values(), URL_PASSWORD]:
        assert secret not in line


async def test_a_failed_task_reports_its_command_and_stderr_without_secrets(
    claude_bin: Path,
    cli_env: dict[str, str],
    cli_cwd: Path,
    mock_api: MockAnthropicAPI,
    tmp_path: Path,
) -> None:
    """Through the real CLI: a wrapper prints credentials to stderr as a misbehaving tool
    would, the system prompt carries some, and the API refuses the call."""
    leaky = "\n".join([*SECRETS.values(), f"fetching {URL}"])
    wrapper = tmp_path / "claude"
    wrapper.write_text(f"#!/bin/sh\ncat >&2 <<'EOF'\n{leaky}\nEOF\nexec {claude_bin} \"$@\"\n")
    wrapper.chmod(0o755)
    mock_api.fail(400, times=5, message="prompt is too long")  # not retried
    prompt_secrets = f"{SECRETS['AWS access key']} {SECRETS['OpenAI project key']}"
    config = PoolConfig(model=DEFAULT_MODEL, system_prompt=f"deploy with {prompt_secrets}")
    executor = ClaudeCliExecutor(wrapper, env=cli_env)
    async with Pool(config, slots=1, store=MemoryStore(), executor=executor, cwd=cli_cwd) as pool:
        result = await pool.run("deploy")
    assert not result.success
    assert result.failed_command is not None
    assert result.stderr is not None
    assert "deploy with" in result.failed_command, "the system prompt is on the command line"
    assert "AKIA" not in result.failed_command, result.failed_command
    report = result.model_dump_json()
    for secret in [*SECRETS.values(), URL_PASSWORD]:
        assert secret not in report
    assert "git.example.com" in result.stderr, "the rest of stderr is kept"
