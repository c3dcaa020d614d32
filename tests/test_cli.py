"""The command line, run as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from collab.cli import app
from collab.models.local_server import free_port

runner = CliRunner()


def test_models_list_shows_the_embedded_model() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert "smollm2-135m" in result.output and "ready" in result.output


def test_pull_of_unknown_model_is_a_friendly_error() -> None:
    result = runner.invoke(app, ["models", "pull", "nope"])
    assert result.exit_code == 1
    assert "'nope' is neither a catalog name nor a file" in result.output
    assert "Traceback" not in result.output


def test_demo_runs_offline_with_both_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    # SmolLM2 in both roles keeps the test fast; the real demo uses Qwen 1.5B as the LLM.
    monkeypatch.setenv("COLLAB_LLM", "smollm2-135m")
    monkeypatch.setenv("COLLAB_N_CTX", "1024")
    result = runner.invoke(app, ["demo"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "policy: default strategy slm_only" in result.output
    assert "rule hard tasks" in result.output and "rule customer replies" in result.output
    # the hard task under verify_draft: SmolLM2 drafts for itself here, so the LLM writes little
    assert re.search(r"rule hard tasks \(.*\): verify_draft", result.output)
    assert "On the hard question the LLM read" in result.output
    assert "sent to the LLM, redacted:" in result.output and "[EMAIL_1]" in result.output
    assert "stand-in" in result.output
    assert "local" in result.output and "remote" in result.output
    assert "would have cost about" in result.output and "The LLM wrote" in result.output


def test_chat_streams_answers_with_attribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAB_LLM", "smollm2-135m")
    monkeypatch.setenv("COLLAB_N_CTX", "1024")
    result = runner.invoke(
        app,
        ["chat", "--model", "collab-auto", "--max-tokens", "12"],
        input="Name a colour.\n\nAnd another one?\n/quit\n",
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "smollm2-135m (local)" in line]
    assert len(lines) == 2  # one attribution per answer
    assert all("strategy slm_only" in line and "saved 100% vs LLM-only" in line for line in lines)


def test_chat_refuses_an_unknown_workflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAB_LLM", "smollm2-135m")
    result = runner.invoke(app, ["chat", "--model", "gpt-9"], input="/quit\n")
    assert result.exit_code == 2
    assert "collab-auto" in result.output


def test_serve_answers_over_http_with_its_key() -> None:
    port = free_port()
    env = {**os.environ, "COLLAB_LLM": "smollm2-135m", "COLLAB_N_CTX": "1024",
           "COLLAB_API_KEY": "k"}  # fmt: skip
    collab = Path(sys.executable).parent / "collab"
    server = subprocess.Popen(
        [str(collab), "serve", "--port", str(port), "--max-tokens", "16"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = {"model": "collab-slm", "messages": [{"role": "user", "content": "Hi"}]}
        url = f"{base}/v1/chat/completions"
        assert httpx.post(url, json=body).status_code == 401
        done = httpx.post(url, json=body, headers={"Authorization": "Bearer k"}, timeout=60)
        assert done.status_code == 200, done.text
        assert done.json()["collab"]["answered_by"]["location"] == "local"
        too_many = httpx.post(
            url, json={**body, "max_tokens": 17}, headers={"Authorization": "Bearer k"}
        )
        assert too_many.status_code == 400
        assert "<title>collab chat</title>" in httpx.get(base).text
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/v1" in out
