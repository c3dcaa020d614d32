"""Message helpers every layer uses: text of a message, chat-template dicts, system hints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    SystemMessage,
    convert_to_openai_messages,
)

from collab.errors import CapabilityError, ConfigurationError, ModelOutputError

# Templates with native tool support (Qwen, Hermes) wrap calls in these tags.
# For the rest, collab teaches a bare JSON call: the format small models most
# readily produce.
TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"


def to_openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI chat dicts (what chat templates and servers take)."""
    try:
        converted = convert_to_openai_messages(list(messages))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"a message cannot be read: {exc}",
            hint="give messages as LangChain messages or OpenAI chat dicts",
        ) from exc
    return converted if isinstance(converted, list) else [converted]


def text_content(content: Any) -> str:
    """The text of a message's content; refuses images and other non-text blocks."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") in {"tool_use", "tool_call"}:
            continue  # carried by tool_calls
        else:
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise CapabilityError(
                f"this model reads text only, not {kind!r} content blocks",
                hint="send text only, or route this request to a multimodal LLM",
            )
    return "".join(parts)


def question_text(messages: Sequence[BaseMessage]) -> str:
    """The last human turn's text: what a judge or scorer is asked about."""
    for message in reversed(messages):
        if message.type == "human":
            return text_content(message.content)
    return text_content(messages[-1].content) if messages else ""


def call_key(call: Any) -> str:
    """Equal for two calls to the same tool with the same arguments."""
    return json.dumps([call["name"], call["args"]], sort_keys=True)


def answered_calls(messages: Sequence[BaseMessage]) -> set[str]:
    """``call_key`` of each call of the current turn (since the last human message) that
    has a tool result in ``messages``."""
    start = max((i for i, m in enumerate(messages) if m.type == "human"), default=0)
    turn = messages[start:]
    results = {getattr(m, "tool_call_id", None) for m in turn if m.type == "tool"}
    calls = (c for m in turn if isinstance(m, AIMessage) for c in m.tool_calls)
    return {call_key(c) for c in calls if c.get("id") in results}


def tool_prompt(tools: list[dict[str, Any]]) -> str:
    """Instructions that teach a model without native tool support to call ``tools``."""
    listing = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
    return (
        "You are an assistant with access to these functions:\n"
        f"{listing}\n"
        'If a function can help, reply only with a JSON object {"name": <function name>, '
        '"arguments": {...}}. Otherwise answer normally.'
    )


def _call_json(call: dict[str, Any]) -> dict[str, Any]:
    fn = call["function"]
    try:
        arguments = json.loads(fn.get("arguments") or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"the arguments of a past call to {fn.get('name')!r} are not JSON: {exc}",
            hint="send tool-call arguments as a JSON object",
        ) from exc
    return {"name": fn["name"], "arguments": arguments}


def chat_dicts(
    messages: Sequence[BaseMessage],
    tools: list[dict[str, Any]] | None,
    *,
    native_tools: bool,
) -> list[dict[str, Any]]:
    """Messages as chat-template dicts with text content.

    With ``native_tools`` the template renders tools and tool calls itself
    (arguments as dicts, as Hugging Face templates expect). Otherwise tool
    instructions go into the system message and past calls are written as
    JSON text, the format those instructions teach.
    """
    dicts: list[dict[str, Any]] = []
    for m in to_openai_messages(messages):
        d: dict[str, Any] = {"role": m["role"], "content": text_content(m.get("content"))}
        calls = m.get("tool_calls") or []
        if calls and native_tools:
            d["tool_calls"] = [{"type": "function", "function": _call_json(c)} for c in calls]
        elif calls:
            d["content"] += "\n".join(json.dumps(_call_json(c), ensure_ascii=False) for c in calls)
        if m["role"] == "tool" and "tool_call_id" in m:
            d["tool_call_id"] = m["tool_call_id"]
        dicts.append(d)
    if tools and not native_tools:
        instructions = tool_prompt(tools)
        if dicts and dicts[0]["role"] == "system":
            dicts[0]["content"] = f"{dicts[0]['content']}\n\n{instructions}"
        else:
            dicts.insert(0, {"role": "system", "content": instructions})
    return dicts


def with_system_hint(messages: Sequence[BaseMessage], hint: str) -> list[BaseMessage]:
    """``messages`` with ``hint`` appended to the system message (added if missing)."""
    out = list(messages)
    if out and isinstance(out[0], SystemMessage):
        out[0] = SystemMessage(f"{text_content(out[0].content)}\n\n{hint}")
    else:
        out.insert(0, SystemMessage(hint))
    return out


def with_system_hint_dicts(messages: list[dict[str, Any]], hint: str) -> list[dict[str, Any]]:
    """``with_system_hint`` for OpenAI chat dicts."""
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": f"{text_content(messages[0].get('content'))}\n\n{hint}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": hint}, *messages]


def as_chunk(message: Any) -> AIMessageChunk:
    """A streamed piece as an AIMessageChunk: chat models that cannot stream yield whole
    messages from ``stream``."""
    if isinstance(message, AIMessageChunk):
        return message
    whole = as_ai_message(message)
    return AIMessageChunk(
        content=whole.content,
        tool_call_chunks=[
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(whole.tool_calls)
        ],
        usage_metadata=whole.usage_metadata,
        response_metadata=whole.response_metadata,
        id=whole.id,
    )


def as_ai_message(message: Any) -> AIMessage:
    """``message`` as an AIMessage; a chat model that answers with anything else is broken."""
    if not isinstance(message, AIMessage):
        raise ModelOutputError(
            f"a chat model answered with {type(message).__name__}, not a message"
        )
    return message
