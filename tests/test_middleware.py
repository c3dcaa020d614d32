"""The pair inside LangChain's create_agent and a LangGraph tool loop, real models only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from collab.chat_model import CollabChatModel
from collab.middleware import CollabMiddleware, PrivacyMiddleware
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.local_server import LocalLLMServer
from collab.models.openai import OpenAICompatibleChatModel
from collab.policy import Policy
from tests.proxy import RecordingProxy
from tests.servers import SMOL

CALLS: Counter[str] = Counter()


@tool
def get_weather(city: str) -> str:
    """The weather now in a city."""
    CALLS[f"get_weather:{city}"] += 1
    return f"It is 18 degrees and sunny in {city}."


@tool
def stock_price(ticker: str) -> str:
    """The latest price of a stock, by its ticker symbol."""
    CALLS[f"stock_price:{ticker}"] += 1
    return f"{ticker.upper()} trades at 123.45 USD."


@tool
def lookup(email: str) -> str:
    """Look up a customer by e-mail address."""
    CALLS[f"lookup:{email}"] += 1
    return f"Customer {email}: 2 open orders."


QUESTIONS = [
    "What's the weather in Paris?", "How is the weather in Tokyo right now?",
    "What is the stock price of AAPL?", "Give me the latest price for MSFT stock.",
    "Is it sunny in Madrid?", "What does NVDA trade at?", "Weather in Berlin please.",
    "Tell me the TSLA share price.", "What's the temperature in Rome?",
    "How much is one GOOG share?",
]  # fmt: skip


@pytest.fixture()
def pair(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel, tmp_path: Path
) -> CollabChatModel:
    return CollabChatModel(
        slm=slm, llm=remote, policy=Policy(default="slm_only", ledger=tmp_path / "s.db")
    )


def finished(messages: list[BaseMessage]) -> bool:
    """An answer at the end, within three model turns, and no call made twice."""
    turns = [m for m in messages if isinstance(m, AIMessage)]
    calls = [str(c["name"]) + str(c["args"]) for m in turns for c in m.tool_calls]
    last = messages[-1]
    return (
        isinstance(last, AIMessage)
        and not last.tool_calls
        and len(turns) <= 3
        and len(calls) == len(set(calls))
    )


def test_create_agent_with_the_pair_finishes_every_question(pair: CollabChatModel) -> None:
    agent = create_agent(model=pair, tools=[get_weather, stock_price])
    used_a_tool = 0
    for question in QUESTIONS:
        out = agent.invoke({"messages": [("user", question)]}, {"recursion_limit": 12})
        assert finished(out["messages"]), (question, out["messages"])
        used_a_tool += any(isinstance(m, ToolMessage) for m in out["messages"])
    # SmolLM2 (135M) decides to call a tool on 3 of the 10 (its P(call) on the others is
    # below its calibrated threshold); every run ends with an answer either way. The test
    # below has Qwen2.5-Coder-0.5B call on all ten.
    assert used_a_tool >= 3


# what each question needs called
NEEDS = [
    "get_weather:Paris", "get_weather:Tokyo", "stock_price:AAPL", "stock_price:MSFT",
    "get_weather:Madrid", "stock_price:NVDA", "get_weather:Berlin", "stock_price:TSLA",
    "get_weather:Rome", "stock_price:GOOG",
]  # fmt: skip


def test_create_agent_calls_the_right_tool_and_answers_from_it_on_every_question(
    qwen_pair: CollabChatModel,
) -> None:
    agent = create_agent(model=qwen_pair, tools=[get_weather, stock_price])
    for question, needed in zip(QUESTIONS, NEEDS, strict=True):
        CALLS.clear()
        out = agent.invoke({"messages": [("user", question)]}, {"recursion_limit": 12})
        messages = out["messages"]
        assert finished(messages), (question, messages)
        assert dict(CALLS) == {needed: 1}, (question, CALLS)  # the right call, made once
        answer = str(messages[-1].content)
        facts = ("123.45",) if needed.startswith("stock") else ("18", "sunny")
        assert any(fact in answer for fact in facts), (question, answer)


def test_collab_middleware_routes_any_agents_model_calls(
    pair: CollabChatModel, remote: OpenAICompatibleChatModel
) -> None:
    agent = create_agent(model=remote, tools=[get_weather], middleware=[CollabMiddleware(pair)])
    out = agent.invoke({"messages": [("user", "What is the weather in Paris?")]})
    answers = [m for m in out["messages"] if isinstance(m, AIMessage)]
    assert answers and all("collab" in m.response_metadata for m in answers)
    assert answers[0].response_metadata["collab"]["strategy"] == "slm_only"


@pytest.fixture()
def proxy(server: LocalLLMServer) -> Iterator[RecordingProxy]:
    recording = RecordingProxy(server.base_url)
    yield recording
    recording.close()


def test_privacy_middleware_redacts_and_tools_get_the_real_values(proxy: RecordingProxy) -> None:
    llm = OpenAICompatibleChatModel(
        location="remote", model=SMOL, base_url=proxy.base_url, temperature=0.0,
        max_tokens=40, timeout=60,
    )  # fmt: skip
    agent = create_agent(model=llm, tools=[lookup], middleware=[PrivacyMiddleware()])
    CALLS.clear()
    ask = 'Call lookup with {"email": "anika.sorensen@example.org"}'
    # the bare stand-in would call again and again (the pair would not): stop at the first
    for _ in agent.stream({"messages": [("user", ask)]}, {"recursion_limit": 6}):
        if CALLS:
            break
    assert CALLS["lookup:anika.sorensen@example.org"] >= 1  # the tool saw the real address
    assert "anika.sorensen" not in proxy.received() and "[EMAIL_1]" in proxy.received()


def test_a_tool_node_loop_finishes_and_never_repeats_a_call(pair: CollabChatModel) -> None:
    model = pair.bind_tools([get_weather, stock_price])

    def call_model(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode([get_weather, stock_price]))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    app = graph.compile()
    CALLS.clear()
    for question in QUESTIONS[:4]:
        out = app.invoke({"messages": [("user", question)]}, {"recursion_limit": 10})
        assert finished(out["messages"]), (question, out["messages"])
    assert CALLS and max(CALLS.values()) == 1
