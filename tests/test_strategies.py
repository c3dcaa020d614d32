"""Strategies: the README's own-strategy example, pure policy logic, and the graph's decisions.

The README example and the graph tests run the real SLM (SmolLM2 in-process)
and the real LLM server; the policy-logic tests use ``ScriptedChatModel``,
whose answers are Python functions, because they test arithmetic and routing,
not models.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from collab import CollabChatModel, ConfigurationError, ModelUnavailableError, Policy
from collab.agents import build_graph
from collab.models import LlamaCppChatModel, OpenAICompatibleChatModel, ScriptedChatModel
from collab.strategies import Cascade, TaskCheck, strategy_names
from collab.strategies.route import TrainedScorer
from collab.trace import Trace

ROOT = Path(__file__).resolve().parents[1]


def scripted(text: str, location: str = "local") -> ScriptedChatModel:
    return ScriptedChatModel(respond=lambda messages, options: text, model=text,
                             location=location)  # fmt: skip


def readme_block(heading: str) -> str:
    section = (ROOT / "README.md").read_text().split(heading, 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, f"no python block under {heading}"
    return found.group(1)


def test_the_readme_strategy_runs_on_the_real_models(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel, capsys: pytest.CaptureFixture[str]
) -> None:
    scope: dict[str, Any] = {"slm": slm, "llm": remote}
    exec(readme_block("#### Write your own strategy"), scope)
    assert "long_to_llm" in strategy_names()
    printed = capsys.readouterr().out
    assert "default strategy long_to_llm -> 30 characters: the slm answers" in printed
    chat = scope["chat"]
    long = chat.invoke("Summarise in one word: " + "the weather is fine today. " * 10)
    trace = Trace.from_metadata(long.response_metadata)
    assert trace.strategy == "long_to_llm" and long.content
    assert [c.location for c in trace.calls] == ["remote"]


# ---- pure logic, scripted models ----------------------------------------------------


def test_a_rule_picks_the_llm_and_the_trace_says_which() -> None:
    policy = Policy.model_validate(
        {"default": "slm_only", "rules": [{"name": "vip", "when": {"tags": ["vip"]},
                                           "strategy": "llm_only"}]}
    )  # fmt: skip
    chat = CollabChatModel(slm=scripted("small"), llm=scripted("large", "remote"), policy=policy)
    assert chat.invoke("hello").content == "small"
    answer = chat.invoke("hello", request_tags=["vip"])
    trace = Trace.from_metadata(answer.response_metadata)
    assert answer.content == "large" and trace.strategy == "llm_only"
    assert "rule vip" in (trace.reason or "")


def test_an_llm_that_is_down_falls_back_once_and_says_so() -> None:
    def down(messages: list[BaseMessage], options: dict[str, Any]) -> str:
        raise ModelUnavailableError("the LLM is down")

    llm = ScriptedChatModel(respond=down, location="remote")
    chat = CollabChatModel(slm=scripted("small"), llm=llm, policy=Policy(default="llm_only"))
    answer = chat.invoke("hello")
    trace = Trace.from_metadata(answer.response_metadata)
    assert answer.content == "small" and trace.extra["llm_down"]
    assert any("LLM unavailable" in e for e in trace.escalations)
    strict = CollabChatModel(slm=scripted("small"), llm=llm,
                             policy=Policy(default="llm_only", on_llm_down="fail"))  # fmt: skip
    with pytest.raises(ModelUnavailableError):
        strict.invoke("hello")


def test_unknown_options_and_strategies_are_refused() -> None:
    chat = CollabChatModel(slm=scripted("small"), llm=scripted("large", "remote"))
    with pytest.raises(ConfigurationError, match=r"unknown call option.*'temprature'"):
        chat.invoke("hello", temprature=0.2)
    with pytest.raises(ValueError, match=r"unknown strategy .fastest."):
        Policy.model_validate({"default": "fastest"})


def test_the_cascade_threshold_is_the_line_between_keep_and_escalate() -> None:
    cascade = Cascade(scripted("draft"), scripted("better", "remote"),
                      TaskCheck(lambda q, a: 0.6, name="fixed"), threshold=0.6)  # fmt: skip
    assert cascade.invoke([HumanMessage("q")]).content == "draft"
    cascade.threshold = 0.61
    escalated = cascade.invoke([HumanMessage("q")])
    trace = Trace.from_metadata(escalated.response_metadata)
    assert escalated.content == "better" and trace.escalations == ["fixed confidence 0.60"]


# ---- the graph's decisions, real SLM --------------------------------------------------


def test_graph_routes_by_the_route_strategy(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    scorer = TrainedScorer().fit(
        ["prove the theorem", "write a compiler", "say hi", "hello there"],
        [True, True, False, False],
    )
    policy = Policy(default="route")
    policy.route.threshold = 0.5
    graph = build_graph(slm, remote, policy=policy, scorer=scorer)
    events = [e for _, e in graph.stream({"messages": [HumanMessage("prove the theorem")]},
                                         stream_mode=["custom"])]  # fmt: skip
    route = next(e for e in events if e["event"] == "route")
    assert route["to"] == "reasoner" and "difficulty" in route["reason"]
    events = [e for _, e in graph.stream({"messages": [HumanMessage("say hi")]},
                                         stream_mode=["custom"])]  # fmt: skip
    assert next(e for e in events if e["event"] == "route")["to"] == "drafter"


def test_graph_escalates_by_the_cascade_signal(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    never_sure = TaskCheck(lambda q, a: 0.0, name="never_sure")
    graph = build_graph(slm, remote, policy=Policy(default="cascade"), signal=never_sure)
    out = graph.invoke({"messages": [HumanMessage("Name a colour.")]})
    trace = Trace.from_metadata(out["messages"][-1].response_metadata)
    assert {c.role for c in trace.calls} >= {"drafter", "reasoner"}
    assert any(c.location == "remote" for c in trace.calls)


def test_graph_verifier_gives_a_verdict(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    graph = build_graph(slm, remote, policy=Policy(default="draft_verify"),
                        checkpointer=InMemorySaver())  # fmt: skip
    config = {"configurable": {"thread_id": "verdict"}}
    events = [e for _, e in graph.stream({"messages": [HumanMessage("What is 2 + 2?")]},
                                         config, stream_mode=["custom"])]  # fmt: skip
    verdict = next(e for e in events if e["event"] == "verdict")
    assert verdict["of"] == "draft" and isinstance(verdict["approved"], bool)
    final = graph.get_state(config).values["messages"][-1]
    trace = Trace.from_metadata(final.response_metadata)
    assert isinstance(final, AIMessage) and final.content
    assert any(c.role == "verifier" and c.location == "remote" for c in trace.calls)
