"""Session fixtures: one real SmolLM2 in-process, one real llama-cpp-python server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collab.models.llamacpp import LlamaCppChatModel
from collab.models.local_server import LocalLLMServer
from collab.models.openai import OpenAICompatibleChatModel
from tests.servers import SMOL, smol_server, stop_all


@pytest.fixture(scope="session", autouse=True)
def _stop_servers() -> Iterator[None]:
    yield
    stop_all()


@pytest.fixture(scope="session")
def slm() -> LlamaCppChatModel:
    return LlamaCppChatModel(model=SMOL, temperature=0.0, max_tokens=48, n_ctx=2048, n_threads=2)


@pytest.fixture(scope="session")
def server() -> LocalLLMServer:
    return smol_server()


@pytest.fixture(scope="session")
def remote(server: LocalLLMServer) -> OpenAICompatibleChatModel:
    return OpenAICompatibleChatModel(
        location="remote",  # stands in for a remote LLM
        model=SMOL,
        base_url=server.base_url,
        temperature=0.0,
        max_tokens=48,
        timeout=60,
    )
