"""``collab serve --config`` and ``collab chat --config``: the user's policy, tools and LLM
endpoints from one file, run as a user would, with real models and a real second endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from collab.cli import app
from collab.config import CONFIG_ENV
from collab.models.local_server import LocalLLMServer, free_port
from tests.servers import SMOL, collab_serve

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

CONFIG = """
slm = "smollm2-135m"
n_ctx = 1024

# The first endpoint is down; the second is the stand-in server.
[[llms]]
base_url = "http://127.0.0.1:{down}/v1"
model = "down-model"
max_retries = 0
timeout_s = 5

[[llms]]
base_url = "{up}"
model = "{model}"
price = {{ input_per_mtok = 1.0, output_per_mtok = 2.0 }}

[policy]
default = "slm_only"

[[policy.rules]]
name = "sums to the LLM"
when = {{ task = ["math"] }}
strategy = "llm_only"

[[tools]]
path = "tests.configured.tools:multiply"

[[tools]]
path = "tests.configured.tools:word_count"

[[workflows]]
name = "collab-auto"
kind = "pair"

[[workflows]]
name = "my-agent"
kind = "agent"
tool_choice = "any"
"""


@pytest.fixture()
def config(server: LocalLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "collab.toml"
    path.write_text(CONFIG.format(down=free_port(), up=server.base_url, model=SMOL))
    monkeypatch.setenv("COLLAB_TEST_TOOL_LOG", str(tmp_path / "tools.log"))
    monkeypatch.setenv(CONFIG_ENV, "")  # restored after the test, whatever the CLI sets
    monkeypatch.chdir(ROOT)  # where tests.configured imports from
    return path


@pytest.fixture()
def served(config: Path) -> Iterator[str]:
    with collab_serve(config) as (base, _):
        yield base


def ask(base: str, model: str, question: str) -> dict[str, object]:
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": question}]}
    done = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
    assert done.status_code == 200, done.text
    return done.json()["collab"]  # type: ignore[no-any-return]


def test_serve_runs_the_configs_policy_tools_and_second_endpoint(served: str, config: Path) -> None:
    names = [m["id"] for m in httpx.get(f"{served}/v1/models").json()["data"]]
    assert names == ["collab-auto", "my-agent"]
    sums = ask(served, "collab-auto", "Calculate 17 * 3.")
    assert sums["strategy"] == "llm_only", sums
    assert "sums to the LLM" in str(sums["reason"])
    assert sums["answered_by"]["model"] == SMOL  # type: ignore[index] (the second endpoint)
    assert sums["cost_usd"] > 0  # at the second endpoint's price
    ask(served, "my-agent", "Calculate 17 * 3.")
    log = (config.parent / "tools.log").read_text()
    assert log.startswith(("multiply", "word_count"))  # a configured tool ran


def test_chat_runs_the_configs_policy_tools_and_second_endpoint(config: Path) -> None:
    args = ["chat", "--config", str(config), "--max-tokens", "16"]
    sums = runner.invoke(app, args, input="Calculate 17 * 3.\n/quit\n", env={"COLUMNS": "200"})
    assert sums.exit_code == 0, sums.output
    assert "sums to the LLM" in sums.output and f"{SMOL} (" in sums.output
    agent = runner.invoke(app, [*args, "--model", "my-agent"], input="Calculate 17 * 3.\n")
    assert agent.exit_code == 0, agent.output
    assert (config.parent / "tools.log").read_text().startswith(("multiply", "word_count"))


def test_the_langgraph_dev_graph_is_built_from_the_config(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collab.agents.app import make_graph
    from collab.trace import TRACE_KEY

    everything_to_the_llm = config.read_text().replace(
        'default = "slm_only"', 'default = "llm_only"'
    )
    config.write_text(everything_to_the_llm)
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv("COLLAB_N_THREADS", "1")
    graph = make_graph()  # what langgraph.json points langgraph dev at
    out = graph.invoke({"messages": [("user", "Hello there.")]}, {"recursion_limit": 12})
    trace = out["messages"][-1].response_metadata[TRACE_KEY]
    assert trace["strategy"] == "llm_only"  # the config's policy (the demo's would say slm_only)
    assert [c["model"] for c in trace["calls"]] == [SMOL]  # its second endpoint answered


@pytest.mark.parametrize(
    ("extra", "field", "problem"),
    [
        ('colour = "blue"\n', "colour", "Extra inputs are not permitted"),
        ('[[tools]]\npath = "tests.configured.tools:divide"\n', "tools.0.path", "has no 'divide'"),
        ('[[tools]]\npath = "no_such_module:f"\n', "tools.0.path", "cannot import"),
        ('[[llms]]\nmodel = "gpt-x"\n', "llms.0.base_url", "Field required"),
        ('[[llms]]\nbase_url = "http://x/v1"\nmodel = "m"\napi_key_env = "NO_SUCH_KEY_VAR"\n',
         "llms.0.api_key_env", "NO_SUCH_KEY_VAR is not set"),
        ('[policy]\ndefault = "guess"\n', "policy.default", "unknown strategy 'guess'"),
    ],
)  # fmt: skip
def test_a_bad_config_file_names_the_file_and_the_field(
    extra: str, field: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, "")
    monkeypatch.chdir(ROOT)
    path = tmp_path / "bad.toml"
    path.write_text(extra)
    result = runner.invoke(app, ["serve", "--config", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    flat = " ".join(result.output.split())
    assert str(path) in flat and field in flat and problem in flat, flat
    assert "Traceback" not in result.output
