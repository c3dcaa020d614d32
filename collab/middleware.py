"""collab as LangChain agent middleware, for ``langchain.agents.create_agent``.

- ``CollabMiddleware(pair)``: every model call of the agent goes to a
  ``CollabChatModel``, whose policy picks the strategy per call (the SLM, the
  LLM, route, cascade with its signals), and which never repeats a tool call
  whose result is already in the conversation. The trace (which model, tokens,
  cost, the policy's reason) rides in each AI message's
  ``response_metadata["collab"]``.
- ``PrivacyMiddleware()``: every call to a remote model passes collab's privacy
  gate: sensitive values are replaced before the request leaves and restored in
  the answer's text and tool-call arguments, so tools run on the real values.

    agent = create_agent(
        model=llm, tools=[...],
        middleware=[PrivacyMiddleware(), CollabMiddleware(CollabChatModel(slm=slm, llm=llm))],
    )
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse

from collab.chat_model import CollabChatModel
from collab.models.profile import location_of
from collab.privacy import KINDS, Detector, RemoteGate

Handler = Callable[[ModelRequest], ModelResponse]
AsyncHandler = Callable[[ModelRequest], Awaitable[ModelResponse]]


class CollabMiddleware(AgentMiddleware):
    """Routes each model call of an agent through ``pair`` (a ``CollabChatModel``)."""

    def __init__(self, pair: CollabChatModel) -> None:
        super().__init__()
        self.pair = pair

    def wrap_model_call(self, request: ModelRequest, handler: Handler) -> ModelResponse:
        return handler(request.override(model=self.pair))

    async def awrap_model_call(self, request: ModelRequest, handler: AsyncHandler) -> ModelResponse:
        return await handler(request.override(model=self.pair))


class PrivacyMiddleware(AgentMiddleware):
    """Redacts what an agent sends to a remote model and restores what comes back.

    ``sensitive``: the kinds to find (``collab.privacy.KINDS``); ``names``: people's
    names known in advance (others are found without them). Local models are
    called as they are.
    """

    def __init__(self, sensitive: Sequence[str] = KINDS, names: Sequence[str] = ()) -> None:
        super().__init__()
        self.detector = Detector(sensitive, names)

    def _gated(self, request: ModelRequest) -> ModelRequest:
        model: Any = request.model
        if location_of(model) == "local" or isinstance(model, CollabChatModel):
            return request  # local, or a pair, whose own gate covers its remote calls
        return request.override(model=RemoteGate(inner=model, detector=self.detector))

    def wrap_model_call(self, request: ModelRequest, handler: Handler) -> ModelResponse:
        return handler(self._gated(request))

    async def awrap_model_call(self, request: ModelRequest, handler: AsyncHandler) -> ModelResponse:
        return await handler(self._gated(request))
