"""What every collab backend shares: the stream-first chat model and the token-level protocol."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

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


_PROBE = (
    "collab vocabulary probe: def f(x):\n    return x ** 2  # ünïcödé 中文 🙂 1234567\n"
    "<|im_start|><|im_end|><|endoftext|></s><s>[INST]"
)


class Tokenizer(Protocol):
    def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...


def vocab_fingerprint(model: Tokenizer) -> str:
    """A digest of how ``model`` tokenizes a probe text; equal digests mean one tokenizer."""
    ids = model.tokenize(_PROBE, special=True)
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
