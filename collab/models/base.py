"""What every collab backend shares: the stream-first chat model and the token-level protocol."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from threading import Event
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

from collab.models.structured import structured_output
from collab.models.tool_format import ToolChoice, ToolLike, chosen_tool_names, to_openai_tools

T = TypeVar("T")


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


@runtime_checkable
class ChatTokenModel(TokenLevelModel, Protocol):
    """A token-level model that also renders a conversation as its own prompt text."""

    def render(
        self, messages: Sequence[BaseMessage], tools: list[dict[str, Any]] | None = None
    ) -> str:
        """The prompt text the model sees for ``messages``."""
        ...


Stop = list[str] | None
Options = dict[str, Any]
Chunks = Iterator[ChatGenerationChunk]


class StreamFirstChatModel(BaseChatModel):
    """A chat model whose one implementation is ``_run``, its stream; invoke gathers it.

    ``_arun`` defaults to ``_run`` driven in a worker thread (local models must
    not block the event loop), with ``cancel`` set when the async caller leaves;
    async-native models override it. Every collab model binds tools and
    structured output the same way.
    """

    def _run(
        self, messages: list[BaseMessage], stop: Stop, options: Options, cancel: Event
    ) -> Chunks:
        """The answer's chunks, the last one carrying usage and the trace."""
        raise NotImplementedError

    async def _arun(
        self, messages: list[BaseMessage], stop: Stop, options: Options
    ) -> AsyncIterator[ChatGenerationChunk]:
        cancel = Event()
        async for chunk in iterate_in_thread(self._run(messages, stop, options, cancel), cancel):
            yield chunk

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._run(messages, stop, kwargs, Event()):
            if run_manager and isinstance(chunk.message.content, str):
                run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in self._arun(messages, stop, kwargs):
            if run_manager and isinstance(chunk.message.content, str):
                await run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._whole(messages, stop, kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await agenerate_from_stream(self._awhole(messages, stop, kwargs))

    def _whole(self, messages: list[BaseMessage], stop: Stop, options: Options) -> Chunks:
        """The chunks of an answer wanted whole (``invoke``): nobody sees them before the end."""
        return self._run(messages, stop, options, Event())

    def _awhole(
        self, messages: list[BaseMessage], stop: Stop, options: Options
    ) -> AsyncIterator[ChatGenerationChunk]:
        return self._arun(messages, stop, options)

    def bind_tools(
        self, tools: Sequence[ToolLike], *, tool_choice: ToolChoice = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        specs = to_openai_tools(tools)
        chosen_tool_names(specs, tool_choice)  # refuse a bad choice now, not at call time
        return self.bind(tools=specs, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        return structured_output(self, schema, method=method, include_raw=include_raw, **kwargs)


async def iterate_in_thread(source: Iterator[T], cancel: Event) -> AsyncIterator[T]:
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


_PROBE = (
    "collab vocabulary probe: def f(x):\n    return x ** 2  # ünïcödé 中文 🙂 1234567\n"
    "<|im_start|><|im_end|><|endoftext|></s><s>[INST]"
)


def to_score(prompt: Sequence[int], continuation: Sequence[int]) -> bool:
    """Whether ``continuation_logprobs`` has anything to score (it needs a prompt to follow)."""
    if not prompt:
        raise ValueError("continuation_logprobs needs at least one prompt token")
    return bool(continuation)


class Tokenizer(Protocol):
    def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...


def vocab_fingerprint(model: Tokenizer) -> str:
    """A digest of how ``model`` tokenizes a probe text; equal digests mean one tokenizer."""
    ids = model.tokenize(_PROBE, special=True)
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
