"""The baselines every benchmark compares against: one model answers everything."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage

from collab.strategies.base import Strategy, arelay, relay
from collab.trace import Trace


class SLMOnly(Strategy):
    name = "slm_only"
    role = "slm"

    def __init__(self, model: BaseChatModel) -> None:
        self.model = model

    def stream(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Iterator[AIMessageChunk]:
        trace = Trace(strategy=self.name)
        return relay(self.model, messages, self.role, trace, **kwargs)

    def astream(
        self, messages: Sequence[BaseMessage], **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        """On the model's own async path: no worker thread waits on a remote model."""
        return arelay(self.model, messages, self.role, Trace(strategy=self.name), **kwargs)


class LLMOnly(SLMOnly):
    name = "llm_only"
    role = "llm"
