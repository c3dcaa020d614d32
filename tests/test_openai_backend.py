"""The OpenAI-compatible backend against a real llama-cpp-python server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from collab.errors import CapabilityError, ModelUnavailableError
from collab.models.base import vocab_fingerprint
from collab.models.engine import log_softmax
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.local_server import LocalLLMServer, free_port
from collab.models.openai import OpenAICompatibleChatModel
from collab.trace import Price, Trace
from tests.servers import SMOL
from tests.test_llamacpp import BY_NAME, PROMPTS, TOOLS


def test_invoke_reports_remote_usage_and_cost(server: LocalLLMServer) -> None:
    model = OpenAICompatibleChatModel(
        location="remote",  # stands in for a remote LLM
        model=SMOL, base_url=server.base_url, temperature=0.0, max_tokens=24,
        price=Price(input_per_mtok=1.0, output_per_mtok=2.0),
    )  # fmt: skip
    result = model.invoke("What is the capital of France?")
    assert isinstance(result, AIMessage) and result.content
    (call,) = Trace.from_metadata(result.response_metadata).calls
    assert call.location == "remote"
    assert call.input_tokens > 5 and 0 < call.output_tokens <= 24
    assert call.cost_usd == pytest.approx((call.input_tokens + 2 * call.output_tokens) / 1e6)
    assert model.server_capabilities().kind == "llama-cpp-python"


def test_served_greedy_tokens_are_in_process_argmax(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    # The server batches differently, so near-ties may flip; every token it picks
    # greedily must still be the in-process argmax or within a hair of it.
    question = [HumanMessage("Name the largest planet in the solar system.")]
    served = str(remote.invoke(question, max_tokens=24).content)
    prompt = slm.engine.encode_prompt(slm.render(question))
    tokens = slm.tokenize(served, special=False)
    logp = log_softmax(slm.logits([*prompt, *tokens[:-1]], len(prompt) - 1))
    gaps = [float(row.max() - row[t]) for row, t in zip(logp, tokens, strict=True)]
    assert max(gaps) < 0.1, gaps


def test_stream_and_astream(remote: OpenAICompatibleChatModel) -> None:
    chunks = list(remote.stream("Name three colours."))
    assert len(chunks) > 2 and chunks[-1].usage_metadata is not None
    assert "".join(str(c.content) for c in chunks).strip()


async def test_async_invoke(remote: OpenAICompatibleChatModel) -> None:
    result = await remote.ainvoke("Say hello.")
    assert result.content


def test_forced_tool_calls_parse_over_http(remote: OpenAICompatibleChatModel) -> None:
    # llama-cpp-python's server has no tool-call parser: collab prompts the format
    # and has the server constrain the reply. Its grammar ignores numeric bounds, so
    # over this server a call is guaranteed to parse and name a bound tool with its
    # required arguments, not to satisfy every constraint.
    bound = remote.bind_tools(TOOLS, tool_choice="any")
    for prompt in PROMPTS[::4]:
        message = bound.invoke(prompt, max_tokens=16)
        assert len(message.tool_calls) == 1, (prompt, message)
        call = message.tool_calls[0]
        schema = BY_NAME[call["name"]].model_json_schema()
        assert set(schema["required"]) <= set(call["args"]) <= set(schema["properties"])


def test_token_level_agrees_with_in_process(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    text = "def square(x):\n    return x * x\n"
    assert remote.tokenize(text) == slm.tokenize(text)
    assert remote.detokenize(slm.tokenize(text)) == text
    assert vocab_fingerprint(remote) == vocab_fingerprint(slm)
    prompt = slm.tokenize("The capital of France is")
    continuation = slm.tokenize(" Paris. The capital of Germany is Berlin.")
    local = slm.continuation_logprobs(prompt, continuation)
    served = remote.continuation_logprobs(prompt, continuation)
    assert len(served) == len(local) == len(continuation)
    assert served == pytest.approx(local, abs=0.02)
    top_local = slm.next_token_logprobs(prompt, 3)
    top_served = remote.next_token_logprobs(prompt, 3)
    assert [t for t, _ in top_served] == [t for t, _ in top_local]
    assert [v for _, v in top_served] == pytest.approx([v for _, v in top_local], abs=0.02)


def test_top_n_only_server_refuses_unlikely_tokens(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    assert remote.server_capabilities().prompt_logprobs_exact is False
    with pytest.raises(CapabilityError, match="only its top"):
        remote.continuation_logprobs(slm.tokenize("The capital of France is"),
                                     slm.tokenize(" zebra"))  # fmt: skip


def test_server_down_is_a_clear_error_after_retries() -> None:
    port = free_port()  # nothing listens here
    model = OpenAICompatibleChatModel(
        location="remote",  # stands in for a remote LLM
        model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, timeout=2,
        capabilities={"kind": "openai"},
    )  # fmt: skip
    with pytest.raises(ModelUnavailableError, match="after 3 attempts") as info:
        model.invoke("hi")
    assert "COLLAB_LLM_BASE_URL" in str(info.value)


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to every chat request, or sleeps past the client's timeout."""

    hits = 0
    mode = "503"

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if type(self).mode == "slow":
            time.sleep(1.5)
        body = json.dumps({"error": {"message": "overloaded"}}).encode()
        try:
            self.send_response(503)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up first

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"hits": 0, "mode": "503"})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", handler
    httpd.shutdown()


def test_5xx_is_retried_then_reported(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    model = OpenAICompatibleChatModel(
        location="remote",  # stands in for a remote LLM
        model="m",
        base_url=url,
        max_retries=2,
        timeout=5,
        capabilities={"kind": "openai"},
    )
    with pytest.raises(ModelUnavailableError, match="503 after 3 attempts"):
        model.invoke("hi")
    assert handler.hits == 3


def test_slow_server_times_out_per_attempt(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.mode = "slow"
    model = OpenAICompatibleChatModel(
        location="remote",  # stands in for a remote LLM
        model="m",
        base_url=url,
        max_retries=1,
        timeout=0.5,
        capabilities={"kind": "openai"},
    )
    with pytest.raises(ModelUnavailableError, match=r"did not answer within 0\.5s"):
        model.invoke("hi")
    assert handler.hits == 2
