"""LLM endpoints tried in order: when one cannot answer, the next does.

An endpoint that is down, refuses the request's credentials, or times out after
its own retries raises ``ModelUnavailableError`` before its first chunk; the
next endpoint then gets the same request. Each endpoint's circuit breaker
(``collab.models.breaker``) makes a dead one fail at once, so a fallback costs
milliseconds after the first failures. Once an answer has started streaming,
a failure is the caller's: a second model cannot continue another's answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from threading import Event
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict, Field

from collab.errors import ModelUnavailableError
from collab.messages import as_chunk
from collab.models.base import Options, Stop, StreamFirstChatModel
from collab.models.profile import ModelProfile, location_of
from collab.trace import Price

log = logging.getLogger(__name__)


class FallbackChatModel(StreamFirstChatModel):
    """``models`` in order: each answers when every one before it is unavailable."""

    models: list[BaseChatModel] = Field(min_length=1)
    model: str = ""
    model_config = ConfigDict(arbitrary_types_allowed=True)

    def model_post_init(self, context: Any) -> None:
        first = self.models[0]
        self.model = self.model or str(getattr(first, "model", type(first).__name__))

    @property
    def _llm_type(self) -> str:
        return "collab-fallback"

    @property
    def location(self) -> str:
        """Remote when any endpoint is: the data may reach any of them."""
        remote = any(location_of(m) == "remote" for m in self.models)
        return "remote" if remote else "local"

    @property
    def price(self) -> Price:
        price = getattr(self.models[0], "price", None)
        return price if isinstance(price, Price) else Price()

    def collab_profile(self) -> ModelProfile:
        # Token-level features differ between servers (and asking would reach a server that
        # may be down): none is promised across them.
        return ModelProfile(name=self.model, location=self.location, price=self.price)

    def _run(
        self, messages: list[BaseMessage], stop: Stop, options: Options, cancel: Event
    ) -> Iterator[ChatGenerationChunk]:
        failures: list[str] = []
        for model in self.models:
            started = False
            try:
                for chunk in model.stream(messages, stop=stop, **options):
                    if cancel.is_set():
                        return
                    started = True
                    yield ChatGenerationChunk(message=as_chunk(chunk))
                return
            except ModelUnavailableError as exc:
                if started:
                    raise
                failures.append(self._failed(model, exc))
        raise self._all_down(failures)

    async def _arun(
        self, messages: list[BaseMessage], stop: Stop, options: Options
    ) -> AsyncIterator[ChatGenerationChunk]:
        failures: list[str] = []
        for model in self.models:
            started = False
            try:
                async for chunk in model.astream(messages, stop=stop, **options):
                    started = True
                    yield ChatGenerationChunk(message=as_chunk(chunk))
                return
            except ModelUnavailableError as exc:
                if started:
                    raise
                failures.append(self._failed(model, exc))
        raise self._all_down(failures)

    def _failed(self, model: BaseChatModel, exc: ModelUnavailableError) -> str:
        where = (
            f"{getattr(model, 'model', type(model).__name__)} at {getattr(model, 'base_url', '?')}"
        )
        log.warning("LLM endpoint %s unavailable (%s): trying the next", where, exc.message)
        return f"{where}: {exc.message}"

    def _all_down(self, failures: list[str]) -> ModelUnavailableError:
        return ModelUnavailableError(
            f"every LLM endpoint is unavailable ({'; '.join(failures)})",
            hint="check the endpoints' URLs, keys and servers, or add one to `llms`",
        )
