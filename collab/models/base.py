"""What every collab backend shares: the token-level protocol and tool-call plumbing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import BaseMessage, SystemMessage, convert_to_openai_messages
from langchain_core.messages.tool import ToolCall, tool_call
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from collab.errors import CapabilityError, ConfigurationError, ModelOutputError

# Templates with native tool support (Qwen, Hermes) wrap calls in these tags.
# For the rest, collab teaches a bare JSON call: the format small models most
# readily produce.
TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"
CALL_START = '{"'

T = TypeVar("T")

ToolLike = dict[str, Any] | type[BaseModel] | BaseTool | Any
ToolChoice = Literal["auto", "any", "none", "required"] | str | dict[str, Any] | bool | None


@runtime_checkable
class TokenLevelModel(Protocol):
    """Token access that speculative decoding and confidence signals need.

    Token ids refer to the model's own vocabulary; two models can share work
    at this level only if their ``vocab_fingerprint`` matches.
    """

    def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def continuation_logprobs(
        self, prompt: Sequence[int], continuation: Sequence[int]
    ) -> list[float]:
        """log p(continuation[i] | prompt + continuation[:i]) for each i."""
        ...

    def next_token_logprobs(self, prompt: Sequence[int], k: int) -> list[tuple[int, float]]:
        """The ``k`` likeliest next tokens after ``prompt``, with log-probabilities."""
        ...


class StreamFirstChatModel(BaseChatModel):
    """A chat model whose one implementation is its stream; invoke gathers the stream.

    ``_astream`` defaults to the sync stream driven in a worker thread (local
    models must not block the event loop); async-native models override it.
    """

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    def _threaded_stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        cancel: threading.Event,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """The stream the worker thread drives; models that can stop early watch ``cancel``."""
        return self._stream(messages, stop, None, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        cancel = threading.Event()
        source = self._threaded_stream(messages, stop, cancel, **kwargs)
        async for chunk in iterate_in_thread(source, cancel):
            if run_manager and isinstance(chunk.message.content, str):
                await run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk


async def iterate_in_thread(source: Iterator[T], cancel: threading.Event) -> AsyncIterator[T]:
    """``source`` driven in a worker thread: blocking work never runs on the event loop.

    Leaving the iteration early sets ``cancel`` and closes ``source``.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def pump() -> None:
        try:
            for item in source:
                loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
                if cancel.is_set():
                    break
            loop.call_soon_threadsafe(queue.put_nowait, ("done", None))
        except BaseException as exc:  # handed to the awaiting side, re-raised there
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
        finally:
            close = getattr(source, "close", None)
            if close:
                close()

    worker = loop.run_in_executor(None, pump)
    try:
        while True:
            kind, value = await queue.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                break
    finally:
        cancel.set()
        await asyncio.shield(worker)


def require_token_level(model: object, purpose: str) -> TokenLevelModel:
    """``model`` as a TokenLevelModel, or a CapabilityError saying what ``purpose`` needs."""
    if isinstance(model, TokenLevelModel):
        return model
    raise CapabilityError(
        f"{type(model).__name__} has no token-level access, which {purpose} needs",
        hint="use a LlamaCppChatModel, TransformersChatModel, or an OpenAICompatibleChatModel "
        "whose server returns prompt log-probabilities",
    )


_PROBE = (
    "collab vocabulary probe: def f(x):\n    return x ** 2  # ünïcödé 中文 🙂 1234567\n"
    "<|im_start|><|im_end|><|endoftext|></s><s>[INST]"
)


def vocab_fingerprint(model: TokenLevelModel) -> str:
    """A digest of how ``model`` tokenizes a probe text; equal digests mean one tokenizer."""
    ids = model.tokenize(_PROBE, special=True)
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]


def to_openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI chat dicts (what chat templates and servers take)."""
    converted = convert_to_openai_messages(list(messages))
    return converted if isinstance(converted, list) else [converted]


def to_openai_tools(tools: Sequence[ToolLike]) -> list[dict[str, Any]]:
    """Tools as OpenAI function specs; a schema that cannot be converted is refused here."""
    specs = []
    for t in tools:
        try:
            spec = convert_to_openai_tool(t)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot turn tool {t!r} into a JSON schema: {exc}",
                hint="give a typed function with a docstring, a pydantic model, a LangChain "
                "tool, or an OpenAI tool dict",
            ) from exc
        _check_tool_spec(spec)
        specs.append(spec)
    return specs


def _check_tool_spec(spec: dict[str, Any]) -> None:
    fn = spec.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ConfigurationError(
            f"tool spec {spec!r} has no function name",
            hint="an OpenAI tool dict looks like "
            '{"type": "function", "function": {"name": ..., "parameters": {...}}}',
        )
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise ConfigurationError(
            f"tool {fn['name']!r}: parameters must be a JSON schema of type object, got {params!r}",
            hint="describe the arguments as an object schema with named properties",
        )
    props = params.get("properties", {})
    if not isinstance(props, dict) or not all(isinstance(v, dict) for v in props.values()):
        raise ConfigurationError(
            f"tool {fn['name']!r}: 'properties' must map names to JSON schemas",
            hint="for example {'city': {'type': 'string'}}",
        )


def chosen_tool_names(tools: list[dict[str, Any]], choice: ToolChoice) -> list[str] | None:
    """Names the model must call one of; None when it may also answer in text.

    Accepts what LangChain and OpenAI callers pass: "auto", "none" (an empty
    list: no tool may be called), "any"/"required"/True, a tool name, or
    {"type": "function", "function": {"name": ...}}.
    """
    names = [t["function"]["name"] for t in tools]
    if choice in (None, "auto", False):
        return None
    if choice == "none":
        return []
    if choice in ("any", "required", True):
        return names
    if isinstance(choice, dict):
        choice = choice.get("function", {}).get("name") or choice.get("name")
    if isinstance(choice, str) and choice in names:
        return [choice]
    raise ConfigurationError(
        f"tool_choice {choice!r} names no bound tool (bound: {', '.join(names) or 'none'})",
        hint='use "auto", "any", "none" or the name of a bound tool',
    )


# Small models can loop inside a string forever; bounded strings keep every
# constrained call short enough to finish within its token budget.
MAX_STRING_CHARS = 160
# ... and a forced call gets at least this many tokens, whatever max_tokens says.
TOOL_CALL_MIN_TOKENS = 512


SMALL_INT_RANGE = 256


def bounded(schema: Any) -> Any:
    """``schema`` made safe to decode under a grammar.

    Strings get a ``maxLength``; small integer ranges become enums, since
    grammar converters ignore ``minimum``/``maximum`` but honour ``enum``.
    """
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded(v) for k, v in schema.items()}
    if out.get("type") == "string" and "maxLength" not in out and "enum" not in out:
        out["maxLength"] = MAX_STRING_CHARS
    low, high = out.get("minimum"), out.get("maximum")
    if isinstance(out.get("exclusiveMinimum"), int):
        low = out["exclusiveMinimum"] + 1
    if isinstance(out.get("exclusiveMaximum"), int):
        high = out["exclusiveMaximum"] - 1
    if out.get("type") == "integer" and isinstance(low, int) and isinstance(high, int):
        span = high - low
        if 0 <= span < SMALL_INT_RANGE:
            out["enum"] = list(range(low, high + 1))
    return out


_SCALAR: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "maxLength": MAX_STRING_CHARS},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
    ]
}
# JSON mode: any object, two levels deep, so that decoding always ends.
JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [
            *_SCALAR["anyOf"],
            {"type": "array", "items": _SCALAR, "maxItems": 32},
            {"type": "object", "additionalProperties": _SCALAR},
        ]
    },
}


def tool_call_schema(tools: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """JSON schema of one call ``{"name": ..., "arguments": {...}}`` to any of ``names``."""
    options = []
    for t in tools:
        fn = t["function"]
        if fn["name"] not in names:
            continue
        params = bounded(fn.get("parameters") or {"type": "object", "properties": {}})
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def new_tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_tool_call(text: str) -> ToolCall:
    """A ToolCall from ``{"name": ..., "arguments": {...}}`` text."""
    # strict=False: some servers' grammars let raw control characters into strings
    data = json.loads(text, strict=False)
    args = data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):
        args = json.loads(args, strict=False)
    return tool_call(name=str(data["name"]), args=dict(args), id=new_tool_call_id())


def tool_prompt(tools: list[dict[str, Any]]) -> str:
    """Instructions that teach a model without native tool support to call ``tools``."""
    listing = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
    return (
        "You are an assistant with access to these functions:\n"
        f"{listing}\n"
        'If a function can help, reply only with a JSON object {"name": <function name>, '
        '"arguments": {...}}. Otherwise answer normally.'
    )


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


def _call_json(call: dict[str, Any]) -> dict[str, Any]:
    fn = call["function"]
    return {"name": fn["name"], "arguments": json.loads(fn.get("arguments") or "{}")}


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
    ``<tool_call>`` text, the format those instructions teach.
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


_FENCE = "```json"


def opens_call(text: str) -> bool | None:
    """Whether a reply that starts with ``text`` is a tool call; None while undecided.

    Calls open with ``<tool_call>``, or with ``{"`` bare or in a ```json fence
    (what instruction-tuned coders write when they mean a call).
    """
    probe = text.lstrip()
    if probe.startswith(TOOL_OPEN):
        return True
    if TOOL_OPEN.startswith(probe) or _FENCE.startswith(probe):
        return None
    if probe.startswith(_FENCE):
        probe = probe.removeprefix(_FENCE)
    compact = "".join(probe.split())
    if compact.startswith(CALL_START):
        return True
    return None if CALL_START.startswith(compact) else False


def split_tool_call_text(text: str) -> ToolCall | None:
    """The call in a ``{"name": ..., "arguments": ...}`` reply (tags optional), else None."""
    body = text.strip()
    if body.startswith(_FENCE):
        body = body.removeprefix(_FENCE).split("```", 1)[0].strip()
    if body.startswith(TOOL_OPEN):
        body = body.removeprefix(TOOL_OPEN).split(TOOL_CLOSE, 1)[0].strip()
    if not body.startswith("{"):
        return None
    try:
        return parse_tool_call(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelOutputError(
            f"the model opened a tool call that does not parse: {body[:200]!r}",
            hint="force the call with tool_choice='any' so decoding is constrained",
        ) from exc


def schema_prompt(schema: dict[str, Any]) -> str:
    """Instructions that tell a model the shape its (constrained) reply will take."""
    return (
        "Reply with a JSON object that matches this JSON schema, filled in for the "
        f"request:\n{json.dumps(schema, ensure_ascii=False)}"
    )


def with_system_hint(messages: Sequence[BaseMessage], hint: str) -> list[BaseMessage]:
    """``messages`` with ``hint`` appended to the system message (added if missing)."""
    out = list(messages)
    if out and isinstance(out[0], SystemMessage):
        out[0] = SystemMessage(f"{text_content(out[0].content)}\n\n{hint}")
    else:
        out.insert(0, SystemMessage(hint))
    return out
