"""verify_draft: the LLM reads the SLM's drafts and writes only where it disagrees; the
stand-in server that reads prompts at speed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from collab.chat_model import CollabChatModel
from collab.errors import CapabilityError, ConfigurationError
from collab.models import catalog
from collab.models.engine import log_softmax
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.local_server import LocalLLMServer
from collab.models.openai import OpenAICompatibleChatModel
from collab.models.scripted import ScriptedChatModel
from collab.policy import Policy
from collab.privacy import RemoteGate
from collab.speculative import Tolerance
from collab.strategies import VerifyDraft
from collab.tools import ToolCaller
from collab.trace import Price, Trace
from tests.servers import SMOL

QWEN_SLM, QWEN_LLM = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
PRICE = Price(input_per_mtok=1.0, output_per_mtok=4.0)


def reading(name: str, n_ctx: int) -> Iterator[OpenAICompatibleChatModel]:
    server = LocalLLMServer(catalog.resolve(name), alias=name, n_ctx=n_ctx, n_threads=2, reads=True)
    server.start()
    try:
        yield OpenAICompatibleChatModel(
            location="remote", model=name, base_url=server.base_url, temperature=0.0,
            max_tokens=48, timeout=120, price=PRICE,
        )  # fmt: skip
    finally:
        server.stop()


@pytest.fixture(scope="module")
def smol_reader() -> Iterator[OpenAICompatibleChatModel]:
    yield from reading(SMOL, 2048)


@pytest.fixture(scope="module")
def qwen_reader() -> Iterator[OpenAICompatibleChatModel]:
    yield from reading(QWEN_LLM, 1024)


def test_the_reading_server_returns_llama_cpps_own_log_probabilities(
    slm: LlamaCppChatModel, smol_reader: OpenAICompatibleChatModel
) -> None:
    caps = smol_reader.server_capabilities()
    assert (caps.kind, caps.prompt_logprobs, caps.token_prompts) == ("collab", "vllm", True)
    tokens = slm.engine.encode_prompt(slm.render([HumanMessage("Write a haiku about the sea.")]))
    tokens += slm.tokenize("Waves fold into foam, the tide keeps its slow promise.", special=False)
    first = 10
    rows = smol_reader.prompt_logprob_rows(tokens, first=first)
    with slm.engine.lock:
        expected = log_softmax(slm.engine.logits(tokens, first))
    assert len(rows) == len(expected) == len(tokens) - first
    for i, (row, want) in enumerate(zip(rows, expected, strict=True)):
        best = int(np.argmax(want))
        assert max(row, key=row.__getitem__) == best, i
        assert abs(row[best] - float(want[best])) < 0.05
        if first + 1 + i < len(tokens):  # the token that follows is always reported
            assert tokens[first + 1 + i] in row
    # Everything else is llama-cpp-python's own server.
    assert str(smol_reader.invoke("Say hello.", max_tokens=8).content).strip()
    url = f"{smol_reader.base_url}/completions"
    broken = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not JSON" in broken.text
    assert httpx.post(url, json={"prompt": "hi", "max_tokens": "many"}).status_code == 422
    with pytest.raises(openai.BadRequestError, match="token ids"):
        smol_reader.client.completions.create(
            model=SMOL, prompt=[], max_tokens=1, extra_body={"prompt_logprobs": 5}
        )


def test_verify_draft_is_the_llms_answer_written_where_it_disagrees(
    qwen_reader: OpenAICompatibleChatModel,
) -> None:
    slm = LlamaCppChatModel(model=QWEN_SLM, temperature=0.0, max_tokens=48, n_ctx=1024)
    llm = LlamaCppChatModel(model=QWEN_LLM, temperature=0.0, max_tokens=48, n_ctx=1024)
    strategy = VerifyDraft(slm, qwen_reader)
    question = [HumanMessage("Write a Python function that returns the n-th Fibonacci number.")]
    answer = strategy.invoke(question, max_tokens=48)
    alone = llm.invoke(question)
    # Greedy and lossless: the LLM's own answer, but for a near tie that the server's batched
    # pass and the in-process one-token steps break apart.
    mine, its = (slm.tokenize(str(m.content), special=False) for m in (answer, alone))
    if mine != its:
        i = next(i for i in range(min(len(mine), len(its))) if mine[i] != its[i])
        context = slm.engine.encode_prompt(slm.render(question)) + its[:i]
        with llm.engine.lock:
            row = log_softmax(llm.engine.logits(context, len(context) - 1))[-1]
        assert row[its[i]] - row[mine[i]] < 0.5, (answer.content, alone.content)
    trace = Trace.from_metadata(answer.response_metadata)
    assert trace.strategy == "verify_draft"
    drafter, verifier = trace.calls
    assert (drafter.role, drafter.location, verifier.role) == ("drafter", "local", "verifier")
    written, read = verifier.output_tokens, verifier.input_tokens
    answer_tokens = len(slm.tokenize(str(answer.content), special=False))
    assert written < answer_tokens / 2  # the SLM wrote most of it
    assert read > drafter.input_tokens  # the LLM read the prompt and the drafts
    assert verifier.cost_usd == pytest.approx(PRICE.cost(read, written))
    assert trace.extra["verify_draft"]["written"] == written
    # Lossy: drafted tokens the LLM ranks second still stand, so it writes no more.
    loose = VerifyDraft(slm, qwen_reader, Tolerance(top_k=2)).invoke(question, max_tokens=48)
    assert Trace.from_metadata(loose.response_metadata).calls[1].output_tokens <= written


def test_verify_draft_says_what_it_cannot_do(
    slm: LlamaCppChatModel, smol_reader: OpenAICompatibleChatModel
) -> None:
    scripted = ScriptedChatModel(respond=lambda messages, options: "hi")
    with pytest.raises(CapabilityError, match="prompt log-probabilities"):
        VerifyDraft(slm, scripted)
    with pytest.raises(CapabilityError, match="in-process SLM drafts"):
        VerifyDraft(scripted, smol_reader)
    with pytest.raises(CapabilityError, match="redacted"):
        VerifyDraft(slm, RemoteGate(inner=smol_reader, enabled=True))
    VerifyDraft(slm, RemoteGate(inner=smol_reader, enabled=False))  # nothing to redact
    with pytest.raises(ConfigurationError, match="top_k"):
        Tolerance(top_k=0)


def test_tolerance_keeps_what_the_llm_ranks_nearly_as_high() -> None:
    row = {1: -0.1, 2: -0.3, 3: -2.5}
    assert not Tolerance().keeps(row, 2)  # lossless: only the LLM's own choice
    assert Tolerance(top_k=2).keeps(row, 2) and not Tolerance(top_k=2).keeps(row, 3)
    assert Tolerance(margin=0.5).keeps(row, 2) and not Tolerance(margin=0.5).keeps(row, 3)
    assert not Tolerance(top_k=5).keeps(row, 4)  # a token the LLM did not report


def test_the_policy_picks_verify_draft_but_never_for_sensitive_text(
    slm: LlamaCppChatModel, smol_reader: OpenAICompatibleChatModel, tmp_path: Path
) -> None:
    policy = Policy(default="verify_draft", privacy="redact", ledger=tmp_path / "s.db")
    chat = CollabChatModel(slm=slm, llm=smol_reader, policy=policy)
    answer = chat.invoke("Name a colour.", max_tokens=12)
    trace = Trace.from_metadata(answer.response_metadata)
    assert trace.strategy == "verify_draft" and str(answer.content).strip()
    decision = chat.decide([HumanMessage("Write to anika.sorensen@example.org")])
    assert decision.strategy == "llm_only" and "unredacted" in decision.reason


def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def test_verify_draft_reads_a_tool_call_and_keeps_it_or_lets_the_llm_call(
    qwen_reader: OpenAICompatibleChatModel,
) -> None:
    slm = LlamaCppChatModel(model=QWEN_SLM, temperature=0.0, max_tokens=48, n_ctx=1024)
    strategy = VerifyDraft(slm, qwen_reader)
    question = [HumanMessage("What is the weather in Paris?")]
    tools = [convert_to_openai_tool(weather)]
    answer = strategy.invoke(question, tools=tools, tool_choice="any")
    assert [c["name"] for c in answer.tool_calls] == ["weather"]
    assert answer.tool_calls[0]["args"] == {"city": "Paris"}
    trace = Trace.from_metadata(answer.response_metadata)
    read = trace.extra["verify_draft"]
    verifier = next(c for c in trace.calls if c.role == "verifier")
    assert verifier.input_tokens == read["read"] > 0 and verifier.output_tokens == 0
    # The LLM agrees with so plain a call: it read it and wrote nothing.
    assert read["kept"] and read["written"] == 0 and not trace.escalations


def book_table(restaurant: str, people: int, time: str) -> str:
    """Book a table at a restaurant for a number of people at a time (HH:MM)."""
    return f"booked {restaurant}"


def area(shape: str, base: float, height: float = 1.0) -> float:
    """Area of a shape (triangle, rectangle) from base and height."""
    return base * height / (2 if shape == "triangle" else 1)


BOOKING = "Book a table for four at Chez Panisse at half past seven in the evening."


def test_the_tool_caller_has_the_llm_read_each_call_and_call_itself_where_it_disagrees() -> None:
    slm = LlamaCppChatModel(model=QWEN_SLM, temperature=0.0, max_tokens=48, n_ctx=1024)
    llm = LlamaCppChatModel(model=QWEN_LLM, temperature=0.0, max_tokens=48, n_ctx=1024)
    caller = ToolCaller(slm, [book_table, area], llm=llm, llm_reads=None)  # where it can
    kept = caller.plan([HumanMessage("What is the area of a triangle 3 wide and 4 tall?")])
    # The SLM writes 3.0 where the LLM would write 3: the same value, so the call stands.
    assert kept.by == "slm" and kept.escalation is None
    assert kept.calls[0]["args"] == {"shape": "triangle", "base": 3, "height": 4}
    (read,) = [c for c in kept.trace.calls if c.role == "verifier"]
    assert read.model == QWEN_LLM and read.input_tokens > 0 and read.output_tokens == 0
    # The SLM books 17:30; the LLM reads that, would have written 19:30, and calls itself.
    wrong = caller.plan([HumanMessage(BOOKING)])
    assert wrong.by == "llm" and "read the call" in str(wrong.escalation)
    assert wrong.calls[0]["args"]["time"] == "19:30"
    roles = [(c.role, c.model) for c in wrong.trace.calls]
    assert roles == [("tool_caller", QWEN_SLM), ("verifier", QWEN_LLM), ("escalation", QWEN_LLM)]
    assert kept.trace.extra["llm_read"]["gap"] == 0 < wrong.trace.extra["llm_read"]["gap"]
    # With a tolerance as wide as that gap (reported to 3 decimals), the call stands: lossy.
    gap = wrong.trace.extra["llm_read"]["gap"]
    loose = ToolCaller(
        slm,
        [book_table, area],
        llm=llm,
        llm_reads=True,
        read_tolerance=Tolerance(margin=gap + 0.01),
    )
    read = loose.plan([HumanMessage(BOOKING)])
    assert read.by == "slm" and read.trace.extra["llm_read"]["kept"]
    # An LLM that cannot read: the confidence checks decide, as before; asked for, a clear error.
    scripted = ScriptedChatModel(respond=lambda messages, options: "-")
    rectangle = [HumanMessage("Area of a 2 by 3 rectangle?")]
    assert ToolCaller(slm, [area], llm=scripted, llm_reads=None).plan(rectangle).by == "slm"
    with pytest.raises(CapabilityError, match="prompt log-probabilities"):
        ToolCaller(slm, [area], llm=scripted, llm_reads=True).plan([HumanMessage("Area?")])


def test_verify_draft_lets_the_llm_call_where_it_would_not_have_written_the_slms_call(
    qwen_reader: OpenAICompatibleChatModel,
) -> None:
    slm = LlamaCppChatModel(model=QWEN_SLM, temperature=0.0, max_tokens=48, n_ctx=1024)
    tools = [convert_to_openai_tool(book_table)]
    answer = VerifyDraft(slm, qwen_reader).invoke([HumanMessage(BOOKING)], tools=tools)
    trace = Trace.from_metadata(answer.response_metadata)
    read = trace.extra["verify_draft"]
    assert not read["kept"] and read["written"] > 0 and trace.escalations
    assert answer.tool_calls[0]["args"]["time"] == "19:30"
