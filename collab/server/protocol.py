"""The OpenAI chat-completions wire format: requests in, completions and stream chunks out."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from collab.trace import Price, Trace

Role = Literal["system", "developer", "user", "assistant", "tool"]


class FunctionCall(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(max_length=100_000)


class ToolCallIn(BaseModel):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class MessageIn(BaseModel):
    """One message of the conversation, as OpenAI clients send it."""

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = Field(None, max_length=256)

    @model_validator(mode="after")
    def _tool_fields_fit_the_role(self) -> MessageIn:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"a {self.role} message cannot carry tool_calls")
        return self

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.text()}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionSpec(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = Field(None, max_length=10_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolSpec(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionSpec


class StreamOptions(BaseModel):
    include_usage: bool = False


class Limits(BaseModel):
    """What one request may ask for; more is refused with a 4xx, never attempted."""

    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_messages: int = Field(256, ge=1)
    max_tokens: int = Field(2048, ge=1, description="the most a request may ask for")
    default_max_tokens: int = Field(512, ge=1, description="when a request does not say")
    max_queue: int = Field(64, ge=1, description="requests waiting for a local model")


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``. Unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    messages: list[MessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, lt=2**32)
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    tools: list[ToolSpec] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = Field(None, max_length=256)
    metadata: dict[str, str] | None = Field(
        None,
        description="collab reads 'tags' (comma list) for policy rules and, for an agent, "
        "'thread_id' (continue that thread: send only the new messages) and 'approve' "
        "('yes' or 'no': resume the thread's pending approval)",
    )

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def messages_in(self) -> list[BaseMessage]:
        return convert_to_messages([m.as_dict() for m in self.messages])

    def params(self, limits: Limits) -> dict[str, Any]:
        """Keyword arguments for a LangChain chat model's ``invoke``/``astream``."""
        asked = self.max_completion_tokens or self.max_tokens
        params: dict[str, Any] = {"max_tokens": asked or limits.default_max_tokens}
        for field in ("temperature", "top_p", "seed", "response_format", "parallel_tool_calls"):
            value = getattr(self, field)
            if value is not None:
                params[field] = value
        if self.stop:
            params["stop"] = [self.stop] if isinstance(self.stop, str) else self.stop
        if self.tools:
            params["tools"] = [t.model_dump(exclude_none=True) for t in self.tools]
            if self.tool_choice is not None:
                params["tool_choice"] = self.tool_choice
        meta = self.metadata or {}
        tags = meta.get("tags")
        if tags:
            params["request_tags"] = [t.strip() for t in tags.split(",") if t.strip()]
        for key in ("thread_id", "approve"):
            if meta.get(key):
                params[key] = meta[key]
        return params

    def refusal(self, limits: Limits) -> str | None:
        """Why this request exceeds ``limits`` or cannot be run, or None."""
        meta = self.metadata or {}
        if meta.get("approve") not in (None, "yes", "no"):
            return "metadata.approve must be 'yes' or 'no'"
        if meta.get("approve") and not meta.get("thread_id"):
            return "metadata.approve resumes a thread: give its metadata.thread_id too"
        asked = self.max_completion_tokens or self.max_tokens
        if asked and asked > limits.max_tokens:
            return f"max_tokens is {asked}; this server allows at most {limits.max_tokens}"
        if len(self.messages) > limits.max_messages:
            return (
                f"{len(self.messages)} messages; this server allows at most {limits.max_messages}"
            )
        return None


def error_body(
    message: str, kind: str = "invalid_request_error", *, param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def attribution(trace: Trace, llm_price: Price) -> dict[str, Any]:
    """The ``collab`` object: who answered, how, and what it saved against LLM-only."""
    last = trace.calls[-1] if trace.calls else None
    llm_only = trace.llm_only_cost(llm_price)
    return {
        "answered_by": {"model": last.model, "location": last.location} if last else None,
        "strategy": trace.strategy,
        "reason": trace.reason,
        "escalations": trace.escalations,
        "calls": [c.model_dump(mode="json") for c in trace.calls],
        "local_tokens": sum(trace.tokens_by("local")),
        "remote_tokens": sum(trace.tokens_by("remote")),
        "cost_usd": trace.cost_usd,
        "llm_only_cost_usd": llm_only,
        "saved_usd": llm_only - trace.cost_usd,
        "extra": trace.extra,
    }


def _tool_calls_out(message: AIMessage) -> list[dict[str, Any]]:
    return [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
        }
        for call in message.tool_calls
    ]


def finish_reason(message: AIMessage) -> str:
    if message.tool_calls:
        return "tool_calls"
    reason = str(message.response_metadata.get("finish_reason") or "stop")
    return reason if reason in ("stop", "length", "tool_calls", "content_filter") else "stop"


def usage(message: AIMessage) -> dict[str, int]:
    meta = message.usage_metadata or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    return {
        "prompt_tokens": meta["input_tokens"],
        "completion_tokens": meta["output_tokens"],
        "total_tokens": meta["total_tokens"],
    }


def completion(cid: str, model: str, message: AIMessage, collab: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` object for ``message``."""
    out: dict[str, Any] = {"role": "assistant", "content": message.text or None}
    if message.tool_calls:
        out["tool_calls"] = _tool_calls_out(message)
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": out, "finish_reason": finish_reason(message)}],
        "usage": usage(message),
        "collab": collab,
    }


def chunk(cid: str, model: str, delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A ``chat.completion.chunk`` carrying ``delta``."""
    reason = extra.pop("finish_reason", None)
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
        **extra,
    }


def delta_of(piece: AIMessageChunk) -> dict[str, Any] | None:
    """The wire delta for one streamed LangChain chunk; None when it carries nothing."""
    delta: dict[str, Any] = {}
    if isinstance(piece.content, str) and piece.content:
        delta["content"] = piece.content
    if piece.tool_call_chunks:
        delta["tool_calls"] = [
            {
                "index": c.get("index") or 0,
                **({"id": c["id"], "type": "function"} if c.get("id") else {}),
                "function": {
                    **({"name": c["name"]} if c.get("name") else {}),
                    "arguments": c.get("args") or "",
                },
            }
            for c in piece.tool_call_chunks
        ]
    return delta or None
