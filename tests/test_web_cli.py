"""`claude-pool worker --http`: a batch worker serves the dashboard, the API and /metrics."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

WAIT = 30


@pytest.mark.cli
def test_worker_http_serves_the_web_face_behind_its_token(
    claude_bin: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tokens = tmp_path / "tokens"
    tokens.write_text("w0rker-t0ken\n")
    env = {**cli_env, "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin)}
    process = subprocess.Popen(
        [sys.executable, "-m", "claude_pool.cli", "worker", "--http", "--port", str(port),
         "--token-file", str(tokens), "--store", str(tmp_path / "pool.db"), "--slots", "1",
         "--log-format", "json"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        for line in process.stderr:
            record = json.loads(line)
            if "dashboard on" in record["message"]:
                break
        assert f"http://127.0.0.1:{port}/" in record["message"]
        assert "MCP" not in record["message"]
        base = f"http://127.0.0.1:{port}"
        bearer = {"authorization": "Bearer w0rker-t0ken"}
        with httpx.Client(base_url=base, timeout=WAIT) as http:
            assert http.get("/api/v1/status").status_code == 401
            status = http.get("/api/v1/status", headers=bearer).json()
            assert len(status["slots"]) == 1
            assert "claude_pool_slots" in http.get("/metrics", headers=bearer).text
            assert http.get("/").status_code == 200
            assert http.post("/mcp", headers=bearer, json={}).status_code == 404
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
