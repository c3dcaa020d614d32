"""What an OpenAI-compatible server can do and how it speaks: probed once per endpoint."""

from __future__ import annotations

import threading
from typing import Any, Literal

import openai
from pydantic import BaseModel, Field

PromptLogprobStyle = Literal["echo", "echo-shifted", "vllm"]
ServerKind = Literal[
    "openai", "vllm", "llama-cpp-python", "collab", "llama.cpp", "ollama", "unknown"
]


class ServerCapabilities(BaseModel):
    """What one server can do; filled by ``probe``."""

    kind: ServerKind = "unknown"
    native_tools: bool = Field(True, description="parses tool calls and honours 'required'")
    stream_usage: bool = Field(True, description="sends usage at the end of a stream")
    prompt_logprobs: PromptLogprobStyle | None = None
    prompt_logprobs_exact: bool = Field(
        True, description="False: only the top N are known (greedy checks work, sampling not)"
    )
    token_prompts: bool = Field(True, description="accepts token ids as completion prompts")
    json_schema_format: Literal["openai", "llama-cpp-python"] = "openai"
    tokenize_path: str | None = None
    call_probe: bool = Field(
        True,
        description="answers a one-token request with top log-probabilities, which decides "
        "tool_choice='auto' on servers that parse no tool calls",
    )
    neutral_sampling: dict[str, Any] = Field(
        default_factory=dict,
        description="server-specific samplers set to no-ops, so that temperature, top_p "
        "and max_tokens mean what the OpenAI API says",
    )


def _kind_from_models(owned_by: str, base_url: str) -> ServerKind:
    if owned_by == "me":
        return "llama-cpp-python"
    if owned_by == "vllm":
        return "vllm"
    if owned_by == "collab":  # collab.models.reading_server
        return "collab"
    if owned_by == "llamacpp":
        return "llama.cpp"
    if owned_by in {"library", "ollama"}:
        return "ollama"
    if "api.openai.com" in base_url or owned_by in {"openai", "system", "openai-internal"}:
        return "openai"
    return "unknown"


def capabilities_for(kind: ServerKind) -> ServerCapabilities:
    if kind == "llama-cpp-python":
        # Parses no tool calls in text and knows no tool_choice="required";
        # streams carry no usage; /extras/tokenize; echo+logprobs with --logits_all.
        return ServerCapabilities(
            kind=kind,
            native_tools=False,
            stream_usage=False,
            prompt_logprobs="echo-shifted",
            prompt_logprobs_exact=False,
            token_prompts=False,
            json_schema_format="llama-cpp-python",
            tokenize_path="/extras/tokenize",
            # its defaults: repeat_penalty 1.1, min_p 0.05, top_k 40
            neutral_sampling={"repeat_penalty": 1.0, "min_p": 0.0, "top_k": 0},
        )
    if kind == "collab":
        # llama-cpp-python's server that reads prompts at speed: vLLM's prompt_logprobs
        # over token ids (collab.models.reading_server)
        return capabilities_for("llama-cpp-python").model_copy(
            update={"kind": kind, "prompt_logprobs": "vllm", "token_prompts": True}
        )
    if kind == "vllm":
        return ServerCapabilities(kind=kind, prompt_logprobs="vllm", tokenize_path="/tokenize")
    if kind == "llama.cpp":
        return ServerCapabilities(kind=kind, tokenize_path="/tokenize")
    return ServerCapabilities(kind=kind)


_PROBED: dict[tuple[str, str], ServerCapabilities] = {}
_PROBING = threading.Lock()


def probe(client: openai.OpenAI, model: str, base_url: str) -> ServerCapabilities:
    """The capabilities of ``model`` at ``base_url``: one GET /models per endpoint and process.

    Raises the SDK's ``openai.APIError`` when the server cannot be asked.
    """
    key = (base_url, model)
    with _PROBING:
        if key not in _PROBED:
            page = client.models.list()
            owned: Any = next((m.owned_by for m in page.data if m.id == model), None)
            owned = owned or (page.data[0].owned_by if page.data else "")
            _PROBED[key] = capabilities_for(_kind_from_models(str(owned or ""), base_url))
        return _PROBED[key].model_copy()
