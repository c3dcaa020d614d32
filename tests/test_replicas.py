"""Two ``collab serve`` replicas on one PostgreSQL: one daily budget, and threads that
either replica can resume, even after the other is killed (SIGKILL) mid-approval."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from collab.config import CONFIG_ENV
from collab.models.local_server import LocalLLMServer
from tests.postgres import postgres_bin, postgres_server
from tests.servers import SMOL, collab_serve

ROOT = Path(__file__).resolve().parents[1]
BIN = postgres_bin()
pytestmark = pytest.mark.skipif(
    BIN is None,
    reason="PostgreSQL is not installed: `make test` installs Debian's postgresql where "
    "apt-get can run as root; install it to run the replica tests",
)

CONFIG = """
slm = "smollm2-135m"
n_ctx = 1024
database_url = "{database}"

[[llms]]
base_url = "{llm}"
model = "{model}"
price = {{ input_per_mtok = 1000.0, output_per_mtok = 1000.0 }}

[policy]
default = "slm_only"
budget = {{ daily_usd = 0.001 }}

[[policy.rules]]
name = "sums to the LLM"
when = {{ task = ["math"] }}
strategy = "llm_only"

[[tools]]
path = "tests.configured.tools:multiply"
requires_approval = true

[[workflows]]
name = "collab-auto"
kind = "pair"

[[workflows]]
name = "my-agent"
kind = "agent"
tool_choice = "any"
"""


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    assert BIN is not None
    with postgres_server(BIN) as url:
        yield url


@pytest.fixture()
def config(
    database: str, server: LocalLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = tmp_path / "collab.toml"
    path.write_text(CONFIG.format(database=database, llm=server.base_url, model=SMOL))
    monkeypatch.setenv("COLLAB_TEST_TOOL_LOG", str(tmp_path / "tools.log"))
    monkeypatch.setenv(CONFIG_ENV, "")
    monkeypatch.chdir(ROOT)
    return path


def post(base: str, model: str, text: str, **metadata: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model, "max_tokens": 12, "messages": [{"role": "user", "content": text}],
    }  # fmt: skip
    if metadata:
        body["metadata"] = metadata
    done = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300)
    assert done.status_code == 200, done.text
    return done.json()  # type: ignore[no-any-return]


def test_two_replicas_share_one_daily_budget(config: Path) -> None:
    with collab_serve(config) as (first, _), collab_serve(config) as (second, _):
        spent = post(first, "collab-auto", "Calculate 17 * 3.")["collab"]
        assert spent["strategy"] == "llm_only" and spent["cost_usd"] > 0.001
        # the spend on the first replica is seen by the second: the budget is gone there too
        kept = post(second, "collab-auto", "Calculate 17 * 3.")["collab"]
        assert kept["strategy"] == "slm_only", kept
        assert "daily LLM budget $0.001 spent" in kept["reason"]


def test_a_thread_interrupted_on_one_replica_resumes_on_the_other(config: Path) -> None:
    log = config.parent / "tools.log"
    with collab_serve(config) as (first, process), collab_serve(config) as (second, _):
        waiting = post(first, "my-agent", "Calculate 6 * 7.", thread_id="order-1")
        pending = waiting["collab"]["extra"]["interrupt"]
        assert pending[0]["type"] == "approval" and pending[0]["calls"][0]["name"] == "multiply"
        assert not log.exists()  # nothing ran before the approval
        process.send_signal(signal.SIGKILL)  # the replica dies right after the interrupt
        process.wait(timeout=30)
        done = post(second, "my-agent", "yes", thread_id="order-1", approve="yes")
        assert done["collab"]["extra"]["thread_id"] == "order-1"
        approved = pending[0]["calls"][0]["args"]
        ran = log.read_text().splitlines()
        assert ran == [f"multiply {float(approved['a'])} {float(approved['b'])}"]  # once
        for _ in range(3):  # SmolLM2 may ask for a further call: refused, the thread ends
            if "interrupt" not in done["collab"]["extra"]:
                break
            done = post(second, "my-agent", "no", thread_id="order-1", approve="no")
        assert "interrupt" not in done["collab"]["extra"]
        body = {"model": "my-agent", "messages": [{"role": "user", "content": "yes"}],
                "metadata": {"thread_id": "order-1", "approve": "yes"}}  # fmt: skip
        again = httpx.post(f"{second}/v1/chat/completions", json=body, timeout=60)
        assert again.status_code == 400 and "no call waiting" in again.text  # nothing reruns
    assert log.read_text().splitlines() == ran  # the approved call ran exactly once, no other
