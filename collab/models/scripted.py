"""A chat model whose answers come from a Python function: for tests of pure logic.

Policy rules, graph routing and threshold arithmetic are tested in
milliseconds with it, beside the tests against real models, never instead of
them. ``ScriptedChatModel(respond=lambda messages, options: "Paris")``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from threading import Event
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict, Field

from collab.messages import text_content
from collab.models.base import Options, Stop, StreamFirstChatModel
from collab.models.profile import ModelProfile
from collab.options import REMOTE_ONLY, check_options
from collab.trace import TRACE_KEY, Location, ModelCall, Price, Trace

Respond = Callable[[list[BaseMessage], dict[str, Any]], AIMessage | str]


class ScriptedChatModel(StreamFirstChatModel):
    """Answers with ``respond(messages, options)``: a string, or an AIMessage (tool calls too).

    ``respond`` may raise (a ``ModelUnavailableError`` plays an LLM that is down).
    Tokens are counted as words, so traces and budgets have numbers to work on.
    """

    respond: Respond
    model: str = "scripted"
    location: Location = "local"
    price: Price = Field(default_factory=Price)
    calls: list[list[BaseMessage]] = Field(default_factory=list, description="what it was asked")

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return "collab-scripted"

    def collab_profile(self) -> ModelProfile:
        return ModelProfile(name=self.model, location=self.location, price=self.price)

    def _run(
        self, messages: list[BaseMessage], stop: Stop, options: Options, cancel: Event
    ) -> Iterator[ChatGenerationChunk]:
        check_options(options, type(self).__name__, extra=REMOTE_ONLY)
        self.calls.append(list(messages))
        reply = self.respond(list(messages), dict(options))
        answer = AIMessage(content=reply) if isinstance(reply, str) else reply
        text = text_content(answer.content)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=text,
                tool_call_chunks=[
                    {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                    for i, c in enumerate(answer.tool_calls)
                ],
            )
        )
        words_in = sum(len(text_content(m.content).split()) for m in messages)
        words_out = len(text.split()) + sum(len(json.dumps(c["args"])) for c in answer.tool_calls)
        call = ModelCall(
            model=self.model, location=self.location, input_tokens=words_in,
            output_tokens=words_out, cost_usd=self.price.cost(words_in, words_out),
        )  # fmt: skip
        trace = Trace(calls=[call])
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=trace.usage_metadata(),
                response_metadata={"model_name": self.model, TRACE_KEY: trace.to_metadata()},
                chunk_position="last",
            )
        )
