"""The agent graph with the real SLM (SmolLM2 in-process) and the real LLM server."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from collab import CollabChatModel
from collab.agents import build_graph
from collab.errors import ModelUnavailableError
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.openai import OpenAICompatibleChatModel
from collab.policy import Policy
from collab.trace import Trace
from tests.servers import SMOL

ROOT = Path(__file__).resolve().parents[1]


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"Sunny, 21 C in {city}."


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def stock_price(company: str) -> str:
    """Look up the stock price of a company."""
    raise RuntimeError("the stock service is down")


def expected(call: dict) -> str:
    fn = {"get_weather": get_weather, "add": add}[call["name"]]
    return str(fn(**call["args"]))


def test_three_tools_several_steps_streaming_tokens_and_events(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    graph = build_graph(
        slm,
        remote,
        tools=[get_weather, add, stock_price],
        tool_choice="any",
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "steps"}}
    events, tokens = [], []
    question = HumanMessage("What is the weather in Paris?")
    for mode, item in graph.stream(
        {"messages": [question]}, config, stream_mode=["messages", "custom"]
    ):
        if mode == "custom":
            events.append(item)
        else:
            chunk, meta = item
            if isinstance(chunk, AIMessageChunk) and chunk.content:
                tokens.append((meta["langgraph_node"], chunk.content))
    messages = graph.get_state(config).values["messages"]
    calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert calls and len(results) == len(calls)  # each call executed, in order
    for c, r in zip(calls, results, strict=True):
        assert r.tool_call_id == c["id"]
        if c["name"] == "stock_price":
            assert r.status == "error" and "stock service is down" in str(r.content)
        else:
            assert r.status == "success" and r.content == expected(c)
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls and final.content
    trace = Trace.from_metadata(final.response_metadata)
    assert trace.strategy == "slm_only" and trace.calls
    assert all(c.location == "local" for c in trace.calls)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "route" and "tool_calls" in kinds and "tool_results" in kinds
    assert kinds[-1] == "done"
    assert tokens and "".join(t for _, t in tokens if _ in ("drafter", "tool_caller"))


def test_a_failing_tool_does_not_stop_the_graph(slm: LlamaCppChatModel) -> None:
    graph = build_graph(slm, slm, tools=[stock_price], tool_choice="any")
    out = graph.invoke({"messages": [HumanMessage("What is ACME's stock price?")]})
    errors = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert errors and all(m.status == "error" for m in errors)
    assert isinstance(out["messages"][-1], AIMessage) and out["messages"][-1].content


async def test_llm_reasoner_async_and_llm_down(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    policy = Policy(default="llm_only")
    graph = build_graph(slm, remote, policy=policy)
    out = await graph.ainvoke({"messages": [HumanMessage("Say hello.")]})
    trace = Trace.from_metadata(out["messages"][-1].response_metadata)
    assert any(c.location == "remote" and c.role == "reasoner" for c in trace.calls)
    assert "llm_down" not in trace.extra

    down = OpenAICompatibleChatModel(
        location="remote",  # stands in for a remote LLM
        model=SMOL,
        base_url="http://127.0.0.1:9/v1",
        timeout=2,
        max_retries=0,
    )
    out = build_graph(slm, down, policy=policy).invoke({"messages": [HumanMessage("Say hello.")]})
    trace = Trace.from_metadata(out["messages"][-1].response_metadata)
    assert trace.extra.get("llm_down") and out["messages"][-1].content
    with pytest.raises(ModelUnavailableError):
        strict = Policy(default="llm_only", on_llm_down="fail")
        build_graph(slm, down, policy=strict).invoke({"messages": [HumanMessage("Hi.")]})


APPROVAL_SCRIPT = """
import json, sys
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from collab import CollabChatModel
from collab.agents import build_graph
from collab.errors import ModelUnavailableError
from collab.models.llamacpp import LlamaCppChatModel
from collab.tools import make_tool
from tests.servers import SMOL

db, ledger, step = sys.argv[1:4]

def refund(order_id: str) -> str:
    \"\"\"Refund an order.\"\"\"
    open(ledger, "a").write(order_id + "\\n")
    return "refunded " + order_id

slm = LlamaCppChatModel(model=SMOL, temperature=0.0, max_tokens=24, n_ctx=2048, n_threads=2)
with SqliteSaver.from_conn_string(db) as saver:
    graph = build_graph(slm, slm, tools=[make_tool(refund, requires_approval=True)],
                        tool_choice="any", checkpointer=saver)
    config = {"configurable": {"thread_id": "refund-1"}}
    if step == "ask":
        graph.invoke({"messages": [HumanMessage("Please refund order 42.")]}, config)
    elif step == "ask-and-die":  # killed the moment the interrupt reaches the caller
        import os, signal
        asked = {"messages": [HumanMessage("Please refund order 42.")]}
        for update in graph.stream(asked, config, stream_mode="updates"):
            if "__interrupt__" in update:
                print(json.dumps({"asked": True}), flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
    else:  # approve the paused call; refuse any further one
        graph.invoke(Command(resume=True), config)
        while graph.get_state(config).next:
            graph.invoke(Command(resume=False), config)
    state = graph.get_state(config)
    print(json.dumps({"next": list(state.next),
                      "interrupts": [i.value for t in state.tasks for i in t.interrupts],
                      "last": type(state.values["messages"][-1]).__name__}))
"""


def test_approval_pauses_persists_on_disk_and_resumes_in_a_new_process(tmp_path: Path) -> None:
    db, ledger = tmp_path / "threads.sqlite", tmp_path / "refunds.txt"

    def run(step: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", APPROVAL_SCRIPT, str(db), str(ledger), step],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    paused = run("ask")
    assert paused["next"] == ["tools"] and not ledger.exists()  # nothing ran before approval
    (question,) = paused["interrupts"]
    assert question["type"] == "approval" and question["calls"][0]["name"] == "refund"
    resumed = run("resume")  # a new process, the same SQLite file
    assert resumed["next"] == [] and resumed["last"] == "AIMessage"
    assert ledger.read_text().count("\n") == 1  # the approved call ran once; no other did


def test_an_approval_survives_a_kill_right_after_the_interrupt(tmp_path: Path) -> None:
    db, ledger = tmp_path / "threads.sqlite", tmp_path / "refunds.txt"

    def run(step: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", APPROVAL_SCRIPT, str(db), str(ledger), step],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    killed = run("ask-and-die")
    assert killed.returncode == -9 and '"asked": true' in killed.stdout, killed.stderr[-2000:]
    assert not ledger.exists()
    resumed = run("resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["next"] == []
    assert ledger.read_text().count("\n") == 1  # the approved call ran, exactly once


def test_langgraph_json_points_at_a_graph_factory() -> None:
    spec = json.loads((ROOT / "langgraph.json").read_text())
    for path in spec["graphs"].values():
        module, attr = path.split(":")
        name = module.removeprefix("./").removesuffix(".py").replace("/", ".")
        assert callable(getattr(importlib.import_module(name), attr))


def test_the_pair_does_not_repeat_a_call_whose_result_is_here(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    pair = CollabChatModel(slm=slm, llm=remote, policy=Policy(default="slm_only"))
    call = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}
    history = [
        HumanMessage("What is the weather in Paris?"),
        AIMessage(content="", tool_calls=[call]),
        ToolMessage("Sunny, 21 C in Paris.", tool_call_id="call_1"),
    ]
    answer = pair.bind_tools([get_weather]).invoke(history)
    assert isinstance(answer, AIMessage) and not answer.tool_calls and answer.content
    trace = Trace.from_metadata(answer.response_metadata)
    # SmolLM2 alone calls get_weather again here; the pair has it answer from the result
    assert trace.escalations and "answered from its result" in trace.escalations[-1]


def test_a_tool_node_loop_finishes_and_runs_each_call_once(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    ran: list[str] = []

    def weather(city: str) -> str:
        """Get the current weather in a city."""
        ran.append(city)
        return f"Sunny, 21 C in {city}."

    pair = CollabChatModel(slm=slm, llm=remote, policy=Policy(default="slm_only"))
    # "any": every turn must call, the trap in which the SLM calls again and again
    model = pair.bind_tools([weather], tool_choice="any")
    builder = StateGraph(MessagesState)
    builder.add_node("agent", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_node("tools", ToolNode([weather]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, ["tools", END])
    builder.add_edge("tools", "agent")
    for question in ("What is the weather in Paris?", "Is it sunny in Tokyo today?"):
        ran.clear()
        out = builder.compile().invoke(
            {"messages": [HumanMessage(question)]}, {"recursion_limit": 10}
        )
        final = out["messages"][-1]
        assert isinstance(final, AIMessage) and not final.tool_calls and final.content
        assert len(ran) == len(set(ran)) == 1  # called, and never the same call twice
        assert sum(isinstance(m, AIMessage) for m in out["messages"]) <= 3
