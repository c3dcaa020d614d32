"""``RemoteGate``: a remote model behind redaction. Nothing sensitive goes in; the
originals come back out, in text, streamed text and tool-call arguments.

Each call learns the conversation's values (``Vault``) from everything it is
given: messages of every role, tool-call arguments, tool results, and the text
inside tool and response schemas. The trace of the answer gains
``extra["redacted"]`` (how many values of each kind were replaced, never the
values) and, when a placeholder could not be put back, ``extra["unrestored"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from threading import Event
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict, Field

from collab.messages import as_chunk
from collab.models.base import Options, Stop, StreamFirstChatModel
from collab.privacy.detect import Detector
from collab.privacy.vault import Vault
from collab.trace import TRACE_KEY, Trace

_SCHEMA_OPTIONS = ("tools", "response_format", "functions")


class RemoteGate(StreamFirstChatModel):
    """``inner`` (a remote model) seen through a vault; ``enabled=False`` passes all as is."""

    inner: BaseChatModel
    detector: Detector = Field(default_factory=Detector)
    enabled: bool = True
    model: str = ""
    model_config = ConfigDict(arbitrary_types_allowed=True)

    def model_post_init(self, context: Any) -> None:
        self.model = self.model or str(getattr(self.inner, "model", type(self.inner).__name__))

    @property
    def _llm_type(self) -> str:
        return "collab-remote-gate"

    def vault(self, messages: list[BaseMessage], options: Options) -> Vault:
        """The conversation's values, learned from ``messages`` and the schemas in ``options``."""
        vault = Vault(self.detector, enabled=self.enabled)
        vault.learn_messages(messages)
        for key in _SCHEMA_OPTIONS:
            if key in options:
                vault.learn_schema(options[key])
        return vault

    def _outgoing(
        self, messages: list[BaseMessage], options: Options
    ) -> tuple[Vault, list[BaseMessage], dict[str, Any]]:
        vault = self.vault(messages, options)
        sent = {
            k: vault.redact_schema(v) if k in _SCHEMA_OPTIONS else v for k, v in options.items()
        }
        return vault, vault.redact_messages(messages), sent

    def _run(
        self, messages: list[BaseMessage], stop: Stop, options: Options, cancel: Event
    ) -> Iterator[ChatGenerationChunk]:
        vault, sent, sent_options = self._outgoing(messages, options)
        restorer = _Restorer(vault)
        for chunk in self.inner.stream(sent, stop=stop, **sent_options):
            if cancel.is_set():
                return
            if (out := restorer.feed(as_chunk(chunk))) is not None:
                yield ChatGenerationChunk(message=out)
        yield ChatGenerationChunk(message=restorer.finish())

    async def _arun(
        self, messages: list[BaseMessage], stop: Stop, options: Options
    ) -> AsyncIterator[ChatGenerationChunk]:
        vault, sent, sent_options = self._outgoing(messages, options)
        restorer = _Restorer(vault)
        async for chunk in self.inner.astream(sent, stop=stop, **sent_options):
            if (out := restorer.feed(as_chunk(chunk))) is not None:
                yield ChatGenerationChunk(message=out)
        yield ChatGenerationChunk(message=restorer.finish())


class _Restorer:
    """Restores a stream: text as it comes, holding back what may be half a placeholder;
    tool calls and metadata at the end, with their arguments restored whole."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.held = ""
        self.rest: AIMessageChunk | None = None  # everything but the text, merged
        self.unrestored: list[str] = []

    def feed(self, chunk: AIMessageChunk) -> AIMessageChunk | None:
        text = chunk.content if isinstance(chunk.content, str) else ""
        others = chunk.model_copy(update={"content": ""})
        self.rest = others if self.rest is None else self.rest + others
        text = self.held + text
        cut = self.vault.pending(text)
        self.held = text[cut:]
        if not text[:cut]:
            return None
        return AIMessageChunk(content=self._restored(text[:cut]), id=chunk.id)

    def _restored(self, text: str) -> str:
        restored = self.vault.restore(text)
        self.unrestored += self.vault.unresolved(restored)
        return restored

    def finish(self) -> AIMessageChunk:
        tail, dropped = self.vault.finish(self.held)
        self.unrestored += dropped + self.vault.unresolved(tail)
        rest = self.rest or AIMessageChunk(content="")
        calls = [
            {
                **c,
                "args": self.vault.restore_arguments(c.get("args") or ""),
            }
            for c in rest.tool_call_chunks
        ]
        meta = dict(rest.response_metadata or {})
        if TRACE_KEY in meta:
            trace = Trace.from_metadata(meta)
            if self.vault.enabled and self.vault.kinds:
                trace.extra["redacted"] = dict(self.vault.kinds)
            if self.unrestored:
                trace.extra["unrestored"] = self.unrestored
            meta[TRACE_KEY] = trace.to_metadata()
        return AIMessageChunk(
            content=tail,
            tool_call_chunks=calls,
            response_metadata=meta,
            usage_metadata=rest.usage_metadata,
            additional_kwargs={
                k: v for k, v in rest.additional_kwargs.items() if k != "tool_calls"
            },
            id=rest.id,
            chunk_position=rest.chunk_position,
        )
