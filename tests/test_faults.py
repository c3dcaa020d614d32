"""Faults and bad input: each a clear error, nothing lost, no wait longer than the timeout.

Real servers on 127.0.0.1 (llama-cpp-python's, a collab server as a process);
a tiny fake HTTP server only where the fault itself is the point (a stream
that breaks off, a server that answers 503).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from collab import CollabChatModel, ContextLengthError, ModelUnavailableError, Policy
from collab.models import LlamaCppChatModel, OpenAICompatibleChatModel, catalog
from collab.models.breaker import breaker_for
from collab.models.local_server import LocalLLMServer, free_port
from collab.trace import Trace
from tests.servers import SMOL
from tests.test_llamacpp import TOOLS


def remote_at(url: str, **kwargs: Any) -> OpenAICompatibleChatModel:
    params: dict[str, Any] = {"model": SMOL, "base_url": url, "location": "remote",
                              "temperature": 0.0, "max_tokens": 24, **kwargs}  # fmt: skip
    return OpenAICompatibleChatModel(**params)


@pytest.fixture(scope="module")
def small_context() -> Iterator[LocalLLMServer]:
    """The stand-in server with a context of 512 tokens and no prompt log-probabilities."""
    server = LocalLLMServer(catalog.resolve(SMOL), alias=SMOL, n_ctx=512, n_threads=1)
    server.start()
    yield server
    server.stop()


def test_a_prompt_over_the_llms_context_is_a_context_error(
    small_context: LocalLLMServer, slm: LlamaCppChatModel
) -> None:
    llm = remote_at(small_context.base_url)
    long = "Summarise: " + "the quick brown fox jumps over the lazy dog. " * 60
    with pytest.raises(ContextLengthError, match="maximum context length is 512"):
        llm.invoke(long)
    with pytest.raises(ContextLengthError):
        list(llm.stream(long))
    pair = CollabChatModel(slm=slm, llm=llm, policy=Policy(default="llm_only"))
    with pytest.raises(ContextLengthError):  # the caller's to fix: not an SLM answer in disguise
        pair.invoke(long)
    assert llm.invoke("Say hi.").content  # the server is fine, and so is its breaker


def test_auto_tool_choice_without_prompt_logprobs_is_decided_without_them(
    small_context: LocalLLMServer,
) -> None:
    llm = remote_at(small_context.base_url, max_retries=3)
    reply = llm.bind_tools(TOOLS, tool_choice="auto").invoke("What is 17 times 23?")
    assert isinstance(reply, AIMessage) and (reply.content or reply.tool_calls)
    assert llm.server_capabilities().call_probe is False  # asked once, not on every request


class _Breaking(BaseHTTPRequestHandler):
    """Streams the start of an answer, then drops the connection; or answers 503."""

    mode = "drop"
    hits = 0

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if type(self).mode == "503":
            self.send_response(503)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        event = ('data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"m",'
                 '"choices":[{"index":0,"delta":{"content":"The answer"}}]}\n\n')  # fmt: skip
        self.wfile.write(event.encode())
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def breaking() -> Iterator[tuple[str, type[_Breaking]]]:
    handler = type("Handler", (_Breaking,), {"mode": "drop", "hits": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", handler
    httpd.shutdown()


def test_an_llm_that_dies_mid_stream(
    breaking: tuple[str, type[_Breaking]], slm: LlamaCppChatModel
) -> None:
    url, _ = breaking
    llm = remote_at(url, capabilities={"kind": "openai"}, max_retries=0)
    with pytest.raises(
        ModelUnavailableError, match=r"part way|before the answer was finished"
    ) as info:
        list(llm.stream("hi"))
    assert "attempts" not in str(info.value) and "start the server" not in str(info.value)
    pair = CollabChatModel(slm=slm, llm=llm, policy=Policy(default="llm_only"))
    answer = pair.invoke("Say hello.")  # nothing shown yet: the SLM answers, flagged
    trace = Trace.from_metadata(answer.response_metadata)
    assert answer.content and trace.extra["llm_down"]
    assert [c.location for c in trace.calls] == ["local"]


def test_the_llm_server_killed_mid_stream(slm: LlamaCppChatModel) -> None:
    server = LocalLLMServer(catalog.resolve(SMOL), alias=SMOL, n_ctx=512, n_threads=1)
    server.start()
    llm = remote_at(server.base_url, max_tokens=200, max_retries=0, timeout=10)
    pair = CollabChatModel(slm=slm, llm=llm, policy=Policy(default="llm_only"))
    chunks = pair.stream("Count from 1 to 100, one number per line.")
    try:
        assert next(c for c in chunks if c.content)  # the LLM has started answering
    finally:
        if server.process is not None:
            server.process.kill()  # SIGKILL, mid-answer
            server.process.wait()
        server.stop()
    with pytest.raises(ModelUnavailableError, match=r"part way|before the answer was finished"):
        for _ in chunks:  # shown in part already: an error, not an answer swapped mid-way
            pass


def test_the_breaker_opens_after_failures_and_lets_traffic_back(
    breaking: tuple[str, type[_Breaking]], remote: OpenAICompatibleChatModel
) -> None:
    url, handler = breaking
    handler.mode = "503"
    llm = remote_at(url, capabilities={"kind": "openai"}, max_retries=1, timeout=1)
    for _ in range(2):  # two calls, each with its retry
        with pytest.raises(ModelUnavailableError, match="503"):
            llm.invoke("hi")
    assert handler.hits == 4
    with pytest.raises(ModelUnavailableError, match="marked down"):
        llm.invoke("hi")
    assert handler.hits == 4  # no request while the endpoint is down
    # A server that answers again: after the wait, one probe goes through and traffic flows.
    working = breaker_for(remote.base_url)
    working.failed("test"), working.failed("test")
    working.down_until = 0.0
    assert remote.invoke("Say hi.").content
    assert working.failures == 0


class GenerateOnly(BaseChatModel):
    """A LangChain chat model that cannot stream: it has ``_generate`` only."""

    inner: BaseChatModel

    @property
    def _llm_type(self) -> str:
        return "generate-only"

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> ChatResult:
        message = self.inner.invoke(messages, stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])


def test_any_langchain_chat_model_serves_as_the_llm_behind_the_gate(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    llm = GenerateOnly(inner=remote, metadata={"location": "remote"})
    pair = CollabChatModel(slm=slm, llm=llm, policy=Policy(default="llm_only"))
    answer = pair.invoke("Write one line to ada.lovelace@example.org saying hello.")
    trace = Trace.from_metadata(answer.response_metadata)
    assert answer.content and trace.extra["remote_audit"]
    assert "ada.lovelace@example.org" not in str(trace.extra["remote_audit"])


def test_serve_refuses_to_start_on_a_model_file_that_does_not_load(tmp_path: Path) -> None:
    whole = catalog.resolve(SMOL).read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(whole[:10_000_000])
    collab = Path(sys.executable).parent / "collab"
    env = {**os.environ, "COLLAB_SLM": str(truncated), "COLLAB_N_THREADS": "1"}
    run = subprocess.run(
        [str(collab), "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode != 0
    assert "could not load" in run.stdout + run.stderr
