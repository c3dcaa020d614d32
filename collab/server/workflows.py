"""What ``collab serve`` offers as models: each workflow is a chat model or the agent graph.

``collab-auto`` is the pair under a policy, ``collab-slm`` and ``collab-llm`` the
two models alone, ``collab-agent`` the agent graph with its own tools.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langgraph.types import Command

from collab.agents.graph import MODEL_OPTIONS
from collab.config import WorkflowEntry
from collab.errors import CollabError
from collab.messages import text_content
from collab.models.base import iterate_in_thread
from collab.models.queue import ModelQueue
from collab.trace import TRACE_KEY, Price, Trace


@dataclass
class Workflow:
    """One served model name and what answers it."""

    name: str
    description: str
    runnable: Any  # a BaseChatModel, or a compiled agent graph when ``agent``
    llm_price: Price = field(default_factory=Price)
    queue: ModelQueue | None = None  # the in-process SLM's, when it uses one
    agent: bool = False

    async def astream(
        self, messages: Sequence[BaseMessage], params: dict[str, Any]
    ) -> AsyncIterator[AIMessageChunk]:
        """The answer as LangChain chunks; the last carries the trace."""
        params = dict(params)
        thread = {k: params.pop(k) for k in ("thread_id", "approve") if k in params}
        if self.agent:
            async for piece in self._agent_stream(messages, params, **thread):
                yield piece
            return
        model: BaseChatModel = self.runnable
        async for piece in model.astream(list(messages), **params):
            yield piece

    async def _agent_stream(
        self,
        messages: Sequence[BaseMessage],
        params: dict[str, Any],
        thread_id: str | None = None,
        approve: str | None = None,
    ) -> AsyncIterator[AIMessageChunk]:
        """The graph's answer: tokens as they come from a node whose answer is final
        (the reasoner's; the drafter's where nothing reviews its draft), then the rest.

        Other nodes' text may be replaced (a draft the cascade escalates, a tool call
        the LLM redoes), so it comes whole with the last chunk. With a checkpointer the
        run belongs to a thread (``thread_id``, a new one if none is given, returned in
        the trace's ``extra``); ``approve`` resumes the thread's pending approval. A
        run that stops for an approval says so in ``extra["interrupt"]``.
        """
        options = {k: params[k] for k in MODEL_OPTIONS if k in params}
        configurable: dict[str, Any] = {"model_options": options}
        graph_input: Any = {"messages": list(messages)}
        if getattr(self.runnable, "checkpointer", None) is not None:
            configurable["thread_id"] = thread_id = thread_id or uuid.uuid4().hex
        elif thread_id is not None:  # the client would think it continued a thread
            raise ThreadError(
                f"{self.name} keeps no threads: send the whole conversation without thread_id",
                hint="serve the agent with a checkpointer (collab serve does)",
            )
        if approve is not None:
            await self._check_pending(configurable, thread_id)
            graph_input = Command(resume=approve == "yes")
        run = _AgentRun()
        source = self.runnable.stream(
            graph_input, {"configurable": configurable},
            stream_mode=["messages", "custom", "values", "updates"],
        )  # fmt: skip
        async for mode, data in iterate_in_thread(source, threading.Event()):
            if (text := run.feed(mode, data)) is not None:
                yield AIMessageChunk(content=text)
        yield run.last_chunk(thread_id)

    async def _check_pending(self, configurable: dict[str, Any], thread_id: str | None) -> None:
        """Refuse an approval with nothing to approve: resuming would answer an empty thread."""
        state = await asyncio.to_thread(self.runnable.get_state, {"configurable": configurable})
        if not state.interrupts:
            raise ThreadError(
                f"thread {thread_id!r} has no call waiting for approval",
                hint="send metadata.approve only after a reply with collab.extra.interrupt",
            )


class ThreadError(CollabError):
    """A thread the agent does not keep, or an approval for a thread that waits for none."""

    status, kind, code = 400, "invalid_request_error", "thread"


class _AgentRun:
    """What an agent run has streamed so far, and its answer or pending approval."""

    def __init__(self) -> None:
        self.strategy, self.sent = "", ""
        self.final: dict[str, Any] | None = None
        self.interrupt: Any = None

    def feed(self, mode: str, data: Any) -> str | None:
        """The text to stream now of one event of the graph's stream, if any."""
        if mode == "custom" and data.get("event") == "route":
            self.strategy = data.get("strategy", "")
        elif mode == "values":
            self.final = data
        elif mode == "updates" and "__interrupt__" in data:
            self.interrupt = [i.value for i in data["__interrupt__"]]
        elif mode == "messages":
            chunk, meta = data
            node = meta.get("langgraph_node")
            live = node == "reasoner" or (node == "drafter" and self.strategy not in REVIEWED)
            text = chunk.content if isinstance(chunk.content, str) else ""
            if live and text and isinstance(chunk, AIMessageChunk):
                self.sent += text
                return text
        return None

    def last_chunk(self, thread_id: str | None) -> AIMessageChunk:
        if self.interrupt is not None:
            trace = Trace(extra={"interrupt": self.interrupt, "thread_id": thread_id})
            calls = [c["name"] for i in self.interrupt for c in i.get("calls", [])]
            text = (
                f"Waiting for approval of {', '.join(calls)}: send metadata.approve 'yes' or "
                f"'no' with metadata.thread_id '{thread_id}'."
            )
            return AIMessageChunk(content=text, response_metadata={TRACE_KEY: trace.to_metadata()})
        messages = (self.final or {}).get("messages") or [AIMessage(content="")]
        answer: AIMessage = messages[-1]
        content = text_content(answer.content)
        rest = content[len(self.sent) :] if content.startswith(self.sent) else content
        meta = dict(answer.response_metadata)
        if thread_id is not None and TRACE_KEY in meta:
            trace = Trace.from_metadata(meta)
            trace.extra["thread_id"] = thread_id
            meta[TRACE_KEY] = trace.to_metadata()
        return AIMessageChunk(
            content=rest, response_metadata=meta, usage_metadata=answer.usage_metadata
        )


# strategies under which the drafter's answer may still be replaced
REVIEWED = ("cascade", "draft_verify")


DEFAULT_WORKFLOWS = [
    WorkflowEntry(name="collab-auto", kind="pair"),
    WorkflowEntry(name="collab-slm", kind="slm"),
    WorkflowEntry(name="collab-llm", kind="llm"),
    WorkflowEntry(name="collab-agent", kind="agent"),
]


def workflows_for(
    slm: BaseChatModel,
    llm: BaseChatModel,
    *,
    pair: BaseChatModel,
    agent: Any = None,
    llm_price: Price | None = None,
    max_queue: int = 64,
) -> dict[str, Workflow]:
    """Workflows over given models: the pair (``collab-auto``), each alone, and the agent."""
    price = llm_price or getattr(llm, "price", None) or Price()
    queue = slm_queue(slm, max_queue)
    runnables = {"pair": pair, "slm": slm, "llm": llm, "agent": agent}
    return {
        entry.name: workflow(entry, runnables[entry.kind], slm, llm, price, queue)
        for entry in DEFAULT_WORKFLOWS
        if runnables[entry.kind] is not None
    }


def workflow(
    entry: WorkflowEntry,
    runnable: Any,
    slm: BaseChatModel,
    llm: BaseChatModel,
    price: Price,
    queue: ModelQueue | None,
) -> Workflow:
    """The workflow ``entry`` names, answered by ``runnable`` (the LLM alone uses no queue)."""
    slm_name, llm_name = getattr(slm, "model", "slm"), getattr(llm, "model", "llm")
    about = (
        entry.description
        or {
            "pair": f"{slm_name} and {llm_name}, split by policy",
            "slm": f"{slm_name} alone, on this machine",
            "llm": f"{llm_name} alone",
            "agent": "the agent graph with its tools",
        }[entry.kind]
    )
    own_queue = None if entry.kind == "llm" else queue
    return Workflow(entry.name, about, runnable, price, own_queue, agent=entry.kind == "agent")


def slm_queue(slm: BaseChatModel, max_queue: int) -> ModelQueue | None:
    """The queue of the in-process SLM (None for one behind a server), holding ``max_queue``."""
    queue: ModelQueue | None = getattr(slm, "queue", None)
    if queue is not None:
        queue.max_queue = max_queue
    return queue
