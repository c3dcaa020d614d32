"""LangChain's standard chat-model tests, against the real SmolLM2 in-process and served."""

from __future__ import annotations

from typing import Any

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from collab.models.llamacpp import LlamaCppChatModel
from collab.models.openai import OpenAICompatibleChatModel
from tests.servers import SMOL, smol_server

LLAMA_PARAMS: dict[str, Any] = {"model": SMOL, "temperature": 0.0, "n_ctx": 2048, "n_threads": 2}


class _Features:
    """What both backends support; the standard tests use these to pick tests."""

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return {"max_tokens": 64}  # short answers keep the suite fast on two cores

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True


class TestLlamaCppUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[LlamaCppChatModel]:
        return LlamaCppChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return LLAMA_PARAMS


class TestLlamaCppIntegration(_Features, ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[LlamaCppChatModel]:
        return LlamaCppChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return LLAMA_PARAMS

    @property
    def supports_model_override(self) -> bool:
        return False  # one loaded model per instance; another model is another instance


class TestOpenAICompatibleUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[OpenAICompatibleChatModel]:
        return OpenAICompatibleChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # Construction needs no server: nothing is sent until the first call.
        return {"model": SMOL, "base_url": "http://127.0.0.1:9/v1", "temperature": 0.0}


class TestOpenAICompatibleIntegration(_Features, ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[OpenAICompatibleChatModel]:
        return OpenAICompatibleChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": SMOL, "base_url": smol_server().base_url, "temperature": 0.0}
