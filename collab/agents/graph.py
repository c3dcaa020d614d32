"""The agent graph: the SLM routes, calls tools and drafts; the LLM verifies and reasons.

``build_graph(slm, llm, tools=..., policy=...)`` returns a compiled LangGraph
``StateGraph``. Per user turn:

    router ──> tool_caller ──> [verifier] ──> tools ──> tool_caller ... ──> responder
       │            └── (no tool applies: its text is the draft) ──┐
       ├──> drafter ──> [verifier (draft_verify) | reasoner (cascade escalates)] ──> responder
       └──> reasoner ──────────────────────────────────────────────────────────────> responder

The router asks the policy (``collab.policy``) how to answer: ``llm_only`` goes
to the reasoner, ``route`` scores difficulty first, everything else starts on
the SLM. Calls to tools marked ``verify`` are checked by the LLM before they run;
tools marked ``requires_approval`` pause the graph (LangGraph ``interrupt``)
until resumed with ``Command(resume=True | False | {call_id: bool})``.

Streaming: ``stream_mode="messages"`` yields every model's tokens (the node is
in the metadata's ``langgraph_node``); ``stream_mode="custom"`` yields
collaboration events, dicts with an ``event`` key: ``route``, ``tool_calls``,
``escalation``, ``verdict``, ``tool_results``, ``llm_down`` and ``done``.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.messages.tool import ToolCall
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy, interrupt

from collab.chat_model import CollabChatModel
from collab.errors import ModelOutputError, ModelUnavailableError
from collab.messages import call_key, text_content
from collab.policy import Decision, Policy
from collab.privacy import RemoteGate
from collab.strategies.base import ask, gather
from collab.strategies.draft_verify import DraftVerify
from collab.strategies.fallback import llm_down
from collab.tools import ToolCaller, make_tools, options_of, run_tool_calls
from collab.trace import TRACE_KEY, Trace

try:  # the configurable key LangGraph reads a run's durability from when none is passed
    from langgraph._internal._constants import CONFIG_KEY_DURABILITY
except ImportError:  # pragma: no cover (moved in another LangGraph release)
    CONFIG_KEY_DURABILITY = "__pregel_durability"


class AgentState(TypedDict, total=False):
    """The graph's state. ``trace`` gathers every step's Trace (as dicts) through a reducer."""

    messages: Annotated[list[AnyMessage], add_messages]
    trace: Annotated[list[dict[str, Any]], operator.add]
    decision: dict[str, Any]  # the policy's Decision for this turn
    answer: AIMessage | None  # the answer being made, before the responder commits it
    next: str  # where the last node routes to
    rounds: int  # tool rounds in this turn
    turn_start: int  # index in ``trace`` where this turn's entries begin


MODEL_OPTIONS = ("max_tokens", "temperature", "top_p", "seed", "stop")


def model_options(config: RunnableConfig) -> dict[str, Any]:
    """The request's options for every model call of a run, from
    ``config["configurable"]["model_options"]`` (``max_tokens``, ``temperature``, ...)."""
    given = (config.get("configurable") or {}).get("model_options") or {}
    return {k: v for k, v in given.items() if k in MODEL_OPTIONS and v is not None}


def _emit(event: str, **data: Any) -> None:
    get_stream_writer()({"event": event, **data})


def _turn(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The messages since the last user message (this turn's tool calls and results)."""
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], HumanMessage):
            return list(messages[i:])
    return list(messages)


@dataclass(frozen=True)
class _ToolSettings:
    max_tool_rounds: int = 4
    min_logprob: float | None = None
    min_name_logprob: float | None = None
    tool_choice: str = "auto"


class _Agent:
    """The nodes; one instance per compiled graph."""

    def __init__(
        self, pair: CollabChatModel, tools: Sequence[Any], settings: _ToolSettings
    ) -> None:
        self.pair = pair
        self.slm, self.llm = pair.slm, pair.llm
        self.tools = make_tools(tools) if tools else []
        self.max_tool_rounds = settings.max_tool_rounds
        self.min_logprob, self.min_name_logprob = settings.min_logprob, settings.min_name_logprob
        self.tool_choice = settings.tool_choice

    def decision(self, state: AgentState) -> Decision:
        return Decision.model_validate(state["decision"])

    def remote(self, state: AgentState) -> BaseChatModel:
        return self.pair.remote_for(self.decision(state))

    # ---- nodes -------------------------------------------------------------------

    def router(self, state: AgentState) -> dict[str, Any]:
        messages = state["messages"]
        decision = self.pair.admit(messages, tools=self.tools or None)
        target = "tool_caller" if self.tools else "drafter"
        reason = decision.reason
        if decision.strategy == "llm_only":
            target = "reasoner"
        trace: list[dict[str, Any]] = []
        if decision.strategy == "route":
            hard, judged = self.pair.route().decide(messages)
            reason += f"; {judged.reason}"
            target = "reasoner" if hard else target
            trace.append(judged.model_copy(update={"strategy": None}).to_metadata())
        _emit("route", to=target, strategy=decision.strategy, reason=reason)
        return {
            "trace": trace,
            "decision": decision.model_dump(),
            "next": target,
            "rounds": 0,
            "answer": None,
            "turn_start": len(state.get("trace", [])),
        }

    def tool_caller(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        messages = state["messages"]
        remote = self.remote(state)
        # Nothing to redact: the LLM gets the calls as they are, and under verify_draft it
        # reads the SLM's (where it can).
        llm = remote.inner if isinstance(remote, RemoteGate) and not remote.enabled else remote
        caller = ToolCaller(
            self.slm,
            self.tools,
            llm=llm,
            min_logprob=self.min_logprob,
            min_name_logprob=self.min_name_logprob,
            llm_reads=None if self.decision(state).strategy == "verify_draft" else False,
        )
        first = not state.get("rounds")
        choice = self.tool_choice if first else "auto"
        plan = caller.plan(messages, tool_choice=choice, options=model_options(config))
        trace = [plan.trace.to_metadata()]
        if plan.escalation:
            _emit("escalation", node="tool_caller", reason=plan.escalation, by=plan.by)
        done = {
            call_key(c) for m in _turn(messages) if isinstance(m, AIMessage) for c in m.tool_calls
        }
        fresh = [c for c in plan.calls if call_key(c) not in done]
        if plan.calls and not fresh:  # the same calls again: the results are in, answer now
            return {"trace": trace, "next": "drafter"}
        if not fresh:  # no tool applies (or none could be called): the text is the answer
            nxt = "responder" if plan.failure else self._after_draft(state, plan.message)
            return {"trace": trace, "answer": plan.message, "next": nxt}
        call_msg = AIMessage(content="", tool_calls=fresh, id=plan.message.id)
        _emit(
            "tool_calls",
            calls=[{"name": c["name"], "args": c["args"]} for c in fresh],
            by=plan.by,
            repaired=plan.repaired,
            dropped=plan.dropped,
        )
        check = any(
            options_of(t).verify for t in self.tools if t.name in {c["name"] for c in fresh}
        )
        return {"messages": [call_msg], "trace": trace, "next": "verifier" if check else "tools"}

    def tools_node(self, state: AgentState) -> dict[str, Any]:
        last = state["messages"][-1]
        if not isinstance(last, AIMessage) or not last.tool_calls:
            return {"next": "drafter"}  # nothing to run (a resumed thread past its calls)
        by_name = {t.name: t for t in self.tools}
        calls = list(last.tool_calls)
        needs = [
            c
            for c in calls
            if c["name"] in by_name and options_of(by_name[c["name"]]).requires_approval
        ]
        refused: dict[str, str] = {}
        if needs:
            answer = interrupt({"type": "approval", "calls": needs})
            for c in needs:
                ok = answer.get(c["id"], False) if isinstance(answer, dict) else bool(answer)
                if not ok:
                    refused[c["id"] or ""] = "the user did not approve this call"
        results = run_tool_calls([c for c in calls if c["id"] not in refused], self.tools)
        by_id = {r.tool_call_id: r for r in results}
        out = [
            by_id.get(c["id"] or "")
            or ToolMessage(
                content=f"Error: {refused[c['id'] or '']}",
                tool_call_id=c["id"] or "",
                name=c["name"],
                status="error",
            )
            for c in calls
        ]
        _emit(
            "tool_results",
            results=[
                {"name": r.name, "status": r.status, "content": str(r.content)[:200]} for r in out
            ],
        )
        rounds = state.get("rounds", 0) + 1
        nxt = "tool_caller" if rounds < self.max_tool_rounds else "drafter"
        return {"messages": out, "rounds": rounds, "next": nxt}

    def drafter(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        decision = self.decision(state)
        messages = state["messages"]
        if decision.strategy == "speculative":
            answer = self.pair.strategy("speculative").invoke(messages, **model_options(config))
            trace = Trace.from_metadata(answer.response_metadata)
        else:
            answer, trace = ask(self.slm, messages, "drafter", **model_options(config))
        return {
            "answer": answer,
            "trace": [trace.to_metadata()],
            "next": self._after_draft(state, answer),
        }

    def _after_draft(self, state: AgentState, answer: AIMessage | None = None) -> str:
        strategy = self.decision(state).strategy
        if strategy == "draft_verify":
            return "verifier"
        if strategy == "cascade" and answer is not None:
            judged = Trace()
            if self.pair.cascade().judge(state["messages"], answer, judged):
                _emit("escalation", node="drafter", reason=judged.reason)
                return "reasoner"
        return "responder"

    def verifier(self, state: AgentState) -> dict[str, Any]:
        """Reviews the draft (draft_verify) or, after a tool call, the calls to verified tools."""
        reviewer = self.pair.draft_verify(self.decision(state))
        last = state["messages"][-1]
        draft = state.get("answer")
        calls = last.tool_calls if isinstance(last, AIMessage) and draft is None else []
        try:
            if calls:
                return self._verify_calls(state, calls, reviewer)
            answer = draft or AIMessage(content="")
            reviewed = gather(reviewer.review(state["messages"], answer, Trace()))
        except ModelUnavailableError as exc:
            if calls:  # calls that need the LLM's check never run unchecked
                down = llm_down(exc, self.pair.policy.on_llm_down, "the calls did not run")
                _emit("llm_down", reason=exc.message)
                return self._reject(calls, "the LLM that verifies it is unavailable", down)
            down = llm_down(exc, self.pair.policy.on_llm_down, "the draft went out unreviewed")
            _emit("llm_down", reason=exc.message)
            return {"trace": [down.to_metadata()], "next": "responder"}
        trace = Trace.from_metadata(reviewed.response_metadata)
        _emit("verdict", of="draft", approved=bool(trace.extra.get("approved")))
        return {"answer": reviewed, "trace": [trace.to_metadata()], "next": "responder"}

    def _verify_calls(
        self, state: AgentState, calls: list[ToolCall], reviewer: DraftVerify
    ) -> dict[str, Any]:
        plan = "\n".join(json.dumps({"name": c["name"], "arguments": c["args"]}) for c in calls)
        question = "\n".join(
            text_content(m.content) for m in _turn(state["messages"]) if isinstance(m, HumanMessage)
        )
        approved, trace = reviewer.verdict(question, f"Tool calls:\n{plan}")
        _emit("verdict", of="tool_calls", approved=bool(approved))
        if approved:
            return {"trace": [trace.to_metadata()], "next": "tools"}
        return self._reject(calls, "the verifier rejected this call", trace)

    def _reject(self, calls: list[ToolCall], why: str, trace: Trace) -> dict[str, Any]:
        """Error results for ``calls``, which do not run; the drafter answers."""
        rejected = [
            ToolMessage(
                content=f"Error: {why}; do not retry it as is",
                tool_call_id=c["id"] or "",
                name=c["name"],
                status="error",
            )
            for c in calls
        ]
        return {"messages": rejected, "trace": [trace.to_metadata()], "next": "drafter"}

    def reasoner(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        """The LLM answers (the SLM when the LLM is down, as the pair does it)."""
        decision = self.decision(state).model_copy(update={"strategy": "llm_only"})
        answer = gather(self.pair.answer(state["messages"], decision, **model_options(config)))
        trace = Trace.from_metadata(answer.response_metadata)
        for call in trace.calls:
            call.role = "drafter" if trace.extra.get("llm_down") else "reasoner"
        if trace.extra.get("llm_down"):
            _emit("llm_down", reason=trace.escalations[-1])
        trace.strategy, trace.reason = None, None
        return {"answer": answer, "trace": [trace.to_metadata()], "next": "responder"}

    def responder(self, state: AgentState) -> dict[str, Any]:
        """Commits the answer, its metadata carrying the whole turn's trace."""
        decision = self.decision(state)
        answer = state.get("answer") or AIMessage(content="")
        turn = Trace(
            strategy=decision.strategy,
            reason=decision.reason,
            extra={"policy": decision.model_dump()},
        )
        for raw in state.get("trace", [])[state.get("turn_start", 0) :]:
            turn = turn.merge(Trace.model_validate(raw))
        final = AIMessage(
            content=answer.content,
            response_metadata={**answer.response_metadata, TRACE_KEY: turn.to_metadata()},
            usage_metadata=turn.usage_metadata(),
            id=answer.id,
        )
        local_in, local_out = turn.tokens_by("local")
        remote_in, remote_out = turn.tokens_by("remote")
        _emit(
            "done",
            strategy=decision.strategy,
            local_tokens=local_in + local_out,
            remote_tokens=remote_in + remote_out,
            cost_usd=turn.cost_usd,
            escalations=turn.escalations,
        )
        return {"messages": [final], "answer": None}


def _next(state: AgentState) -> str:
    return state["next"]


def build_graph(
    slm: BaseChatModel,
    llm: BaseChatModel,
    *,
    tools: Sequence[Any] = (),
    policy: Policy | None = None,
    checkpointer: Any = None,
    max_tool_rounds: int = 4,
    min_logprob: float | None = None,
    min_name_logprob: float | None = None,
    tool_choice: str = "auto",
    scorer: Any = None,
    signal: Any = None,
) -> CompiledStateGraph[AgentState, None, AgentState, AgentState]:
    """The agent graph over ``slm`` and ``llm``; see the module docstring.

    ``tools``: functions, pydantic models or LangChain tools (see ``collab.tools``).
    ``policy``: how each turn is answered (default: the SLM, the LLM on escalation).
    ``checkpointer``: LangGraph persistence (``InMemorySaver``, ``SqliteSaver``), needed
    for approvals and for threads that span calls. ``min_logprob``,
    ``min_name_logprob``: escalate SLM tool calls less confident than this (on the
    whole call, on the choice of tool) to the LLM. ``tool_choice``: "any" makes the first
    step of each turn call a tool; "auto" lets the SLM decide. ``scorer``, ``signal``:
    the route's scorer and the cascade's signal, as for ``CollabChatModel``.
    """
    policy = policy or Policy(default="slm_only")
    pair = CollabChatModel(slm=slm, llm=llm, policy=policy, scorer=scorer, signal=signal)
    settings = _ToolSettings(max_tool_rounds, min_logprob, min_name_logprob, tool_choice)
    agent = _Agent(pair, tools, settings)
    remote = RetryPolicy(max_attempts=3, retry_on=ModelOutputError)
    builder = StateGraph(AgentState)
    builder.add_node("router", agent.router)
    builder.add_node("tool_caller", agent.tool_caller)
    builder.add_node("tools", agent.tools_node)
    builder.add_node("drafter", agent.drafter)
    builder.add_node("verifier", agent.verifier, retry_policy=remote)
    builder.add_node("reasoner", agent.reasoner, retry_policy=remote)
    builder.add_node("responder", agent.responder)
    builder.add_edge(START, "router")
    routes: dict[str, list[Any]] = {
        "router": ["tool_caller", "drafter", "reasoner"],
        "tool_caller": ["tools", "verifier", "drafter", "responder", "reasoner"],
        "tools": ["tool_caller", "drafter"],
        "drafter": ["verifier", "reasoner", "responder"],
        "verifier": ["tools", "drafter", "responder"],
        "reasoner": ["responder"],
    }
    for node, targets in routes.items():
        builder.add_conditional_edges(node, _next, targets)
    builder.add_edge("responder", END)
    graph = builder.compile(checkpointer=checkpointer)
    if checkpointer is None:
        return graph
    # Each step's checkpoint is written before the next step starts (LangGraph's
    # "sync" durability; its default, "async", writes while the next step runs): an
    # approval that reached the caller is on disk even if the process dies then.
    return graph.with_config(configurable={CONFIG_KEY_DURABILITY: "sync"})
