"""CollabChatModel and its strategies against the real SLM and a real LLM server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage

from collab.chat_model import CollabChatModel
from collab.errors import ModelUnavailableError, PolicyError
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.local_server import LocalLLMServer
from collab.models.openai import OpenAICompatibleChatModel
from collab.policy import Ledger, Policy
from collab.privacy import Detector
from collab.trace import Trace
from tests.proxy import RecordingProxy
from tests.servers import SMOL

QUESTION = [HumanMessage("Name one primary colour.")]


def trace(message: AIMessage) -> Trace:
    return Trace.from_metadata(message.response_metadata)


def collab(
    slm: LlamaCppChatModel, llm: OpenAICompatibleChatModel, tmp_path: Path, **policy: object
) -> CollabChatModel:
    return CollabChatModel(
        slm=slm, llm=llm, policy=Policy.model_validate({"ledger": tmp_path / "s.db", **policy})
    )


@pytest.mark.parametrize("strategy", ["slm_only", "llm_only", "route", "cascade", "draft_verify"])
def test_every_strategy_answers_with_its_trace(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel, tmp_path: Path, strategy: str
) -> None:
    chat = collab(slm, remote, tmp_path, default=strategy)
    answer = chat.invoke(QUESTION, max_tokens=24)
    assert isinstance(answer.content, str) and answer.content.strip()
    t = trace(answer)
    assert t.strategy == strategy
    assert f"default strategy {strategy}" in (t.reason or "")
    roles = {c.role for c in t.calls}
    locations = {c.location for c in t.calls}
    expected_roles = {
        "slm_only": {"slm"},
        "llm_only": {"llm"},
        "draft_verify": {"drafter", "verifier"},
    }
    if strategy in expected_roles:
        assert expected_roles[strategy] <= roles
    if strategy == "slm_only":
        assert locations == {"local"}
    if strategy in ("llm_only", "draft_verify"):
        assert "remote" in locations
        assert any('"messages"' in r["body"] for r in t.extra["remote_audit"])
    if strategy == "route":
        assert 0 <= t.extra["difficulty"] <= 1 and "router" in roles
    if strategy == "cascade":
        assert 0 < t.extra["confidence_logprob_mean"] <= 1
    if strategy == "draft_verify":
        assert isinstance(t.extra["approved"], bool)
        assert ("llm_output_tokens_saved" in t.extra) == t.extra["approved"]
    assert answer.usage_metadata and answer.usage_metadata["output_tokens"] == t.output_tokens


def test_thresholds_steer_route_and_cascade(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel, tmp_path: Path
) -> None:
    # route: the LLM answers at difficulty >= threshold; cascade: escalates below it
    for strategy, to_llm, to_slm in (("route", 0.0, 1.0), ("cascade", 1.0, 0.0)):
        always = collab(
            slm, remote, tmp_path, default=strategy, **{strategy: {"threshold": to_llm}}
        )
        t = trace(always.invoke(QUESTION, max_tokens=8))
        assert any(c.role == "llm" for c in t.calls), t.reason
        never = collab(slm, remote, tmp_path, default=strategy, **{strategy: {"threshold": to_slm}})
        t = trace(never.invoke(QUESTION, max_tokens=8))
        assert all(c.location == "local" for c in t.calls), t.reason


def test_streaming_and_async_carry_the_decision(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel, tmp_path: Path
) -> None:
    chat = collab(
        slm,
        remote,
        tmp_path,
        rules=[{"name": "fast", "when": {"tags": ["fast"]}, "strategy": "slm_only"}],
    )
    chunks = list(chat.stream(QUESTION, request_tags=["fast"], max_tokens=16))
    assert sum(1 for c in chunks if c.content) > 1
    total: AIMessageChunk = chunks[0]
    for c in chunks[1:]:
        total += c
    t = Trace.from_metadata(total.response_metadata)
    assert t.strategy == "slm_only" and "rule fast" in (t.reason or "")
    assert t.extra["policy"]["rule"] == "fast"

    async def run() -> tuple[AIMessage, list[str]]:
        pieces = [str(c.content) async for c in chat.astream(QUESTION, max_tokens=8)]
        return await chat.ainvoke(QUESTION, request_tags=["fast"], max_tokens=8), pieces

    answer, pieces = asyncio.run(run())
    assert trace(answer).strategy == "slm_only" and "".join(pieces).strip()


def test_exhausted_budget_switches_to_the_slm(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel, tmp_path: Path
) -> None:
    Ledger(tmp_path / "s.db").add(1.0)
    chat = collab(slm, remote, tmp_path, default="llm_only", budget={"daily_usd": 1.0})
    t = trace(chat.invoke(QUESTION, max_tokens=8))
    assert t.strategy == "slm_only" and "daily LLM budget" in (t.reason or "")
    assert all(c.location == "local" for c in t.calls)


@pytest.fixture()
def dead_llm() -> OpenAICompatibleChatModel:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return OpenAICompatibleChatModel(
        location="remote",  # stands in for a remote LLM
        model=SMOL,
        base_url=f"http://127.0.0.1:{port}/v1",
        max_retries=0,
        timeout=5,
    )


def test_llm_down_gives_a_flagged_slm_answer_unless_the_policy_says_fail(
    slm: LlamaCppChatModel, dead_llm: OpenAICompatibleChatModel, tmp_path: Path
) -> None:
    chat = collab(slm, dead_llm, tmp_path, default="llm_only")
    answer = chat.invoke(QUESTION, max_tokens=8)
    t = trace(answer)
    assert answer.content and t.extra["llm_down"] is True
    assert "unavailable" in (t.reason or "") and t.strategy == "slm_only"
    failing = collab(
        slm, dead_llm, tmp_path, default="cascade", on_llm_down="fail", cascade={"threshold": 1.0}
    )
    with pytest.raises(ModelUnavailableError):
        failing.invoke(QUESTION, max_tokens=8)


def test_privacy_local_and_refuse(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel, tmp_path: Path
) -> None:
    private = [HumanMessage("My email is kim@example.com. Say hello.")]
    local = collab(slm, remote, tmp_path, default="llm_only", privacy="local")
    t = trace(local.invoke(private, max_tokens=8))
    assert t.strategy == "slm_only" and all(c.location == "local" for c in t.calls)
    assert "email" in (t.reason or "")
    refusing = collab(slm, remote, tmp_path, default="llm_only", privacy="refuse")
    with pytest.raises(PolicyError, match="email"):
        refusing.invoke(private)


FIRST = ["Alice Martin", "Bob Keller", "Chen Wei", "Dana Scott", "Emil Novak"]
TEMPLATES = [
    "Customer: {name}. Her email is {email}. Draft a one-line reply.",
    "Please call {name} back on {phone} about the order.",
    "Refund to card {card} for {name}, then confirm.",
    "Wire the deposit to IBAN {iban}; the account holder is {name}.",
    "My name is {name} and my social security number is {ssn}. Is it safe to share?",
]
CARDS = [
    "4111 1111 1111 1111",
    "5500 0000 0000 0004",
    "3400 0000 0000 009",
    "6011 0000 0000 0004",
    "4012 8888 8888 1881",
]
IBANS = [
    "DE89 3704 0044 0532 0130 00",
    "GB82 WEST 1234 5698 7654 32",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91 ABNA 0417 1643 00",
    "ES91 2100 0418 4502 0005 1332",
]


def planted_prompts() -> Iterator[tuple[str, list[str]]]:
    for i in range(50):
        name = FIRST[i % 5]
        values = {
            "name": name,
            "email": f"{name.split()[0].lower()}.{i}@example.com",
            "phone": f"+1 415 555 {1000 + i:04d}",
            "card": CARDS[i % 5],
            "iban": IBANS[(i // 5) % 5],
            "ssn": f"{123 + i:03d}-45-{6789 - i:04d}",
        }
        template = TEMPLATES[i % 5]
        used = [v for k, v in values.items() if "{" + k + "}" in template]
        yield template.format(**values), used


@pytest.fixture()
def proxy(server: LocalLLMServer) -> Iterator[RecordingProxy]:
    """The real server behind a proxy that records what it was sent."""
    recording = RecordingProxy(server.base_url)
    yield recording
    recording.close()


def through(proxy: RecordingProxy, max_tokens: int) -> OpenAICompatibleChatModel:
    return OpenAICompatibleChatModel(
        location="remote",  # stands in for a remote LLM
        model=SMOL,
        base_url=proxy.base_url,
        temperature=0.0,
        max_tokens=max_tokens,
        timeout=60,
    )


def answered_remotely(t: Trace) -> bool:
    return "llm_down" not in t.extra and any(c.location == "remote" for c in t.calls)


def test_redaction_keeps_planted_data_off_the_server(
    slm: LlamaCppChatModel, proxy: RecordingProxy, tmp_path: Path
) -> None:
    chat = collab(slm, through(proxy, 6), tmp_path, default="llm_only", privacy="redact",
                  names=FIRST)  # fmt: skip
    planted: list[str] = []
    for prompt, used in planted_prompts():
        assert {f.text for f in Detector(names=FIRST).find(prompt)} >= set(used), prompt
        t = trace(chat.invoke([HumanMessage(prompt)]))
        assert t.extra["policy"]["privacy"] == "redact" and t.extra["remote_audit"]
        assert answered_remotely(t)
        planted += used
    received = proxy.received()
    decoded = json.dumps([json.loads(b) for b in proxy.bodies if b], ensure_ascii=False)
    assert len(proxy.bodies) >= 50 and "[NAME_1]" in received
    leaked = {
        p
        for p in planted
        for part in [p, *p.split()]
        if len(part) > 3 and (part in received or part in decoded)
    }
    assert not leaked


def test_restored_answers_use_the_data(
    slm: LlamaCppChatModel, proxy: RecordingProxy, tmp_path: Path
) -> None:
    chat = collab(slm, through(proxy, 24), tmp_path, default="llm_only", privacy="redact")
    cases = [
        ("Copy this line: To: sam.lee@example.com", "sam.lee@example.com"),
        ("Say: hello ops@example.net", "ops@example.net"),
        ("Fill in the greeting. Name: Rosa Ortiz\nGreeting: Hello", "Rosa Ortiz"),
    ]
    answers = []
    for prompt, _ in cases:
        answer = chat.invoke([HumanMessage(prompt)])
        assert answered_remotely(trace(answer))
        answers.append(str(answer.content))
    received = proxy.received()
    assert not any(value in received for _, value in cases)
    restored = [value for (_, value), a in zip(cases, answers, strict=True) if value in a]
    assert len(restored) >= 2, answers


def test_the_policy_can_pick_speculative_decoding(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel, tmp_path: Path
) -> None:
    from collab.speculative import NgramDrafter, SpeculativeChatModel

    spec = SpeculativeChatModel(target=slm, drafter=NgramDrafter(), temperature=0.0)
    chat = CollabChatModel(
        slm=slm, llm=remote, speculative=spec,
        policy=Policy(default="slm_only", ledger=tmp_path / "s.db",
                      rules=[{"name": "edits", "when": {"tags": ["edit"]},
                              "strategy": "speculative"}]),
    )  # fmt: skip
    request = [HumanMessage("Repeat this line: the quick brown fox jumps over the lazy dog")]
    answer = chat.invoke(request, request_tags=["edit"], max_tokens=20)
    t = trace(answer)
    assert t.strategy == "speculative" and "rule edits" in (t.reason or "")
    assert answer.content == slm.invoke(request, max_tokens=20).content  # lossless
    assert "speculative" in t.extra
