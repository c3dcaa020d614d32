"""What every strategy shares: the stream-first contract, and traces gathered from model calls.

A strategy turns one request (messages plus call options) into one answer. Its
stream yields the answer's chunks; the last chunk carries the whole request's
trace in ``response_metadata["collab"]`` and its summed ``usage_metadata``.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    message_chunk_to_message,
)

from collab.messages import as_ai_message, as_chunk
from collab.models.base import iterate_in_thread
from collab.models.profile import location_of
from collab.trace import TRACE_KEY, ModelCall, Trace, stopwatch


class Strategy(ABC):
    """How one generation is split between the SLM and the LLM."""

    name: ClassVar[str]

    @abstractmethod
    def stream(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Iterator[AIMessageChunk]:
        """The answer's chunks; the last one carries the trace."""

    async def astream(
        self, messages: Sequence[BaseMessage], **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        """``stream`` in a worker thread: local models must not block the event loop.

        Leaving the iteration early stops the work at the next chunk.
        """
        async for chunk in iterate_in_thread(self.stream(messages, **kwargs), threading.Event()):
            yield chunk

    def invoke(self, messages: Sequence[BaseMessage], **kwargs: Any) -> AIMessage:
        return gather(self.stream(messages, **kwargs))

    async def ainvoke(self, messages: Sequence[BaseMessage], **kwargs: Any) -> AIMessage:
        chunks = [c async for c in self.astream(messages, **kwargs)]
        return gather(iter(chunks))


def gather(chunks: Iterator[AIMessageChunk]) -> AIMessage:
    """One message from a stream of chunks."""
    total = sum(chunks, AIMessageChunk(content=""))
    return as_ai_message(message_chunk_to_message(total))


def model_name(model: BaseChatModel) -> str:
    for attr in ("model", "model_name"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def trace_of(message: BaseMessage, model: BaseChatModel, role: str) -> Trace:
    """The trace of one model call: its own when it is a collab model, else from its usage."""
    meta = getattr(message, "response_metadata", {}) or {}
    if TRACE_KEY in meta:
        trace = Trace.from_metadata(meta)
    else:
        usage = getattr(message, "usage_metadata", None) or {}
        trace = Trace(
            calls=[
                ModelCall(
                    model=model_name(model),
                    location=location_of(model),
                    input_tokens=usage.get("input_tokens", 0),
                    output_tokens=usage.get("output_tokens", 0),
                )
            ]
        )
    for call in trace.calls:
        call.role = call.role or role
    return trace


def ask(
    model: BaseChatModel, messages: Sequence[BaseMessage], role: str, **kwargs: Any
) -> tuple[AIMessage, Trace]:
    """One whole answer from ``model``, with its trace."""
    with stopwatch() as watch:
        message = as_ai_message(model.invoke(list(messages), **kwargs))
    trace = trace_of(message, model, role)
    if len(trace.calls) == 1 and not trace.calls[0].latency_s:
        trace.calls[0].latency_s = watch.elapsed
    return message, trace


def relay(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    role: str,
    trace: Trace,
    **kwargs: Any,
) -> Iterator[AIMessageChunk]:
    """Stream ``model``'s answer as the strategy's own, then the final chunk with ``trace``.

    ``trace`` (what the strategy did before, its name and reason) is completed
    with this call and closed into the final chunk.
    """
    relayed = _Relayed(model, role, trace)
    for piece in model.stream(list(messages), **kwargs):
        if (chunk := relayed.feed(piece)) is not None:
            yield chunk
    yield relayed.close()


async def arelay(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    role: str,
    trace: Trace,
    **kwargs: Any,
) -> AsyncIterator[AIMessageChunk]:
    """``relay`` on the model's own async path (a remote model holds no thread meanwhile)."""
    relayed = _Relayed(model, role, trace)
    async for piece in model.astream(list(messages), **kwargs):
        if (chunk := relayed.feed(piece)) is not None:
            yield chunk
    yield relayed.close()


class _Relayed:
    """What ``relay`` passes on of each piece, and the answer it adds up to."""

    def __init__(self, model: BaseChatModel, role: str, trace: Trace) -> None:
        self.model, self.role, self.trace = model, role, trace
        self.total: AIMessageChunk | None = None

    def feed(self, piece: Any) -> AIMessageChunk | None:
        chunk = as_chunk(piece)
        self.total = chunk if self.total is None else self.total + chunk
        if not (chunk.content or chunk.tool_call_chunks):
            return None
        return AIMessageChunk(
            content=chunk.content, tool_call_chunks=chunk.tool_call_chunks, id=chunk.id
        )

    def close(self) -> AIMessageChunk:
        answer = self.total or AIMessageChunk(content="")
        own = trace_of(answer, self.model, self.role)
        return final_chunk(self.trace.merge(own), answer.response_metadata)


def final_chunk(trace: Trace, metadata: dict[str, Any] | None = None) -> AIMessageChunk:
    """The closing chunk of a strategy's stream: no content, the trace and summed usage."""
    meta = {k: v for k, v in (metadata or {}).items() if k != TRACE_KEY}
    meta[TRACE_KEY] = trace.to_metadata()
    return AIMessageChunk(content="", usage_metadata=trace.usage_metadata(), response_metadata=meta)


def answer_chunks(message: AIMessage, trace: Trace) -> Iterator[AIMessageChunk]:
    """A finished answer as a stream: its content, then the final chunk."""
    if message.content or message.tool_calls:
        yield AIMessageChunk(
            content=message.content,
            tool_call_chunks=[
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(message.tool_calls)
            ],
        )
    yield final_chunk(trace, message.response_metadata)
