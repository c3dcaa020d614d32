"""Session fixtures: one real SmolLM2 in-process, one real llama-cpp-python server, and a
Qwen2.5-Coder pair for the agent tests that need a model able to pick tools."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collab.chat_model import CollabChatModel
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.local_server import LocalLLMServer
from collab.models.openai import OpenAICompatibleChatModel
from collab.policy import Policy
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


@pytest.fixture(scope="session")
def qwen_pair(tmp_path_factory: pytest.TempPathFactory) -> CollabChatModel:
    """Qwen2.5-Coder-0.5B as the SLM, 1.5B as the LLM (in-process, as a local LLM is),
    and a cascade that hands the LLM the calls the SLM is unsure of."""
    slm = LlamaCppChatModel(model="qwen2.5-coder-0.5b", temperature=0.0, max_tokens=48, n_ctx=2048)
    llm = LlamaCppChatModel(model="qwen2.5-coder-1.5b", temperature=0.0, max_tokens=48, n_ctx=2048)
    policy = Policy(
        default="cascade",
        cascade={"signal": "logprob_min", "threshold": 0.5},
        ledger=tmp_path_factory.mktemp("ledger") / "s.db",
    )
    return CollabChatModel(slm=slm, llm=llm, policy=policy)
