"""What ``collab serve`` offers as models: each workflow is a chat model or the agent graph.

``collab-auto`` is the pair under a policy, ``collab-slm`` and ``collab-llm`` the
two models alone, ``collab-agent`` the agent graph with its own tools.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage

from collab.agents.graph import MODEL_OPTIONS
from collab.messages import text_content
from collab.models.queue import ModelQueue
from collab.trace import Price


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
        if self.agent:
            async for piece in self._agent_stream(messages, params):
                yield piece
            return
        model: BaseChatModel = self.runnable
        async for piece in model.astream(list(messages), **params):
            yield piece

    async def _agent_stream(
        self, messages: Sequence[BaseMessage], params: dict[str, Any]
    ) -> AsyncIterator[AIMessageChunk]:
        """The graph's answer: tokens as they come from a node whose answer is final
        (the reasoner's; the drafter's where nothing reviews its draft), then the rest.

        Other nodes' text may be replaced (a draft the cascade escalates, a tool call
        the LLM redoes), so it comes whole with the last chunk.
        """
        options = {k: params[k] for k in MODEL_OPTIONS if k in params}
        config: Any = {"configurable": {"model_options": options}}
        strategy, sent, final = "", "", None
        async for mode, data in self.runnable.astream(
            {"messages": list(messages)}, config, stream_mode=["messages", "custom", "values"]
        ):
            if mode == "custom" and data.get("event") == "route":
                strategy = data.get("strategy", "")
            elif mode == "values":
                final = data
            elif mode == "messages":
                chunk, meta = data
                node = meta.get("langgraph_node")
                live = node == "reasoner" or (node == "drafter" and strategy not in REVIEWED)
                text = chunk.content if isinstance(chunk.content, str) else ""
                if live and text and isinstance(chunk, AIMessageChunk):
                    sent += text
                    yield AIMessageChunk(content=text)
        answer: AIMessage = final["messages"][-1] if final else AIMessage(content="")
        content = text_content(answer.content)
        rest = content[len(sent) :] if content.startswith(sent) else content
        yield AIMessageChunk(
            content=rest,
            response_metadata=answer.response_metadata,
            usage_metadata=answer.usage_metadata,
        )


# strategies under which the drafter's answer may still be replaced
REVIEWED = ("cascade", "draft_verify")


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
    slm_name, llm_name = getattr(slm, "model", "slm"), getattr(llm, "model", "llm")
    found = [
        Workflow("collab-auto", f"{slm_name} and {llm_name}, split by policy", pair, price, queue),
        Workflow("collab-slm", f"{slm_name} alone, on this machine", slm, price, queue),
        Workflow("collab-llm", f"{llm_name} alone", llm, price, None),
    ]
    if agent is not None:
        about = "the agent graph with its own tools"
        found.append(Workflow("collab-agent", about, agent, price, queue, agent=True))
    return {w.name: w for w in found}


def slm_queue(slm: BaseChatModel, max_queue: int) -> ModelQueue | None:
    """The queue of the in-process SLM (None for one behind a server), holding ``max_queue``."""
    queue: ModelQueue | None = getattr(slm, "queue", None)
    if queue is not None:
        queue.max_queue = max_queue
    return queue
