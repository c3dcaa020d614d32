"""The configured SLM and LLM, built from settings.

The SLM runs in-process. The LLM is the remote server at ``llm_base_url``; with
none configured, a local stand-in server takes its place over the same HTTP path.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from langchain_core.language_models import BaseChatModel

from collab.config import Endpoint, Settings, config_error, load_settings
from collab.models import catalog
from collab.models.fallback import FallbackChatModel
from collab.models.llamacpp import LlamaCppChatModel, default_threads
from collab.models.local_server import LocalLLMServer, LocalServerChatModel
from collab.models.openai import OpenAICompatibleChatModel

Announce = Callable[[str], None]

_SERVERS: dict[tuple[str, int, bool], LocalLLMServer] = {}


def thread_budget(settings: Settings) -> tuple[int, int]:
    """llama.cpp threads for the in-process SLM and for the stand-in LLM server.

    ``n_threads``, when set, is what both get. Otherwise, where the stand-in runs
    on this machine, the two split the cores and together never ask for more
    threads than there are (one each at the least): llama.cpp's threads spin
    while they wait for each other, so two models that each take every core stall
    one another (in ``bench/colocated.py`` the stand-in finished no request in
    30 s beside SmolLM2). The SLM gets a quarter (at least one: a small model gains little
    from more), the LLM the rest. With a remote LLM the SLM takes every core.
    """
    if settings.n_threads:
        return settings.n_threads, settings.n_threads
    cores = default_threads()
    if settings.llms or settings.llm_base_url:
        return cores, cores
    slm = max(1, cores // 4)
    return slm, max(1, cores - slm)


def make_slm(settings: Settings | None = None, **overrides: object) -> LlamaCppChatModel:
    settings = settings or load_settings()
    params: dict[str, object] = {
        "model": settings.slm,
        "n_ctx": settings.n_ctx,
        "n_threads": thread_budget(settings)[0],
        **overrides,
    }
    return LlamaCppChatModel.model_validate(params)


def make_llm(
    settings: Settings | None = None,
    *,
    announce: Announce | None = None,
    reads: bool = False,
    **overrides: object,
) -> BaseChatModel:
    """The remote LLM: the endpoints of ``llms`` in order (one falls back to the next),
    else the server at ``llm_base_url``, else a local stand-in server (started on first
    use; with ``reads``, one that also returns prompt log-probabilities, which
    verify-by-reading needs)."""
    settings = settings or load_settings()
    common: dict[str, object] = {
        "timeout": settings.llm_timeout_s,
        "max_retries": settings.llm_max_retries,
        **overrides,
    }
    if settings.llms:
        endpoints = [endpoint_model(settings, i, e, common) for i, e in enumerate(settings.llms)]
        return endpoints[0] if len(endpoints) == 1 else FallbackChatModel(models=endpoints)
    if settings.llm_base_url:
        return OpenAICompatibleChatModel.model_validate(
            {
                "model": settings.llm,
                "base_url": settings.llm_base_url,
                "api_key": settings.llm_api_key,
                "price": settings.price_of(settings.llm, remote=True),
                **common,
            }
        )
    server = local_server(settings, reads=reads)
    if announce:
        announce(
            f"No remote LLM configured (COLLAB_LLM_BASE_URL): serving {settings.llm} on "
            "127.0.0.1 as a stand-in, priced as a remote model."
        )
    return LocalServerChatModel(
        server=server, price=settings.price_of(settings.llm, remote=True), **common
    )


def local_server(settings: Settings, *, reads: bool = False) -> LocalLLMServer:
    """The one stand-in server for ``settings.llm`` in this process."""
    key = (settings.llm, settings.n_ctx, reads)
    if key not in _SERVERS:
        _SERVERS[key] = LocalLLMServer(
            catalog.resolve(settings.llm),
            alias=settings.llm,
            n_ctx=settings.n_ctx,
            n_threads=thread_budget(settings)[1],
            reads=reads,
        )
    return _SERVERS[key]


def endpoint_model(
    settings: Settings, index: int, endpoint: Endpoint, common: dict[str, object]
) -> OpenAICompatibleChatModel:
    """The chat model of ``settings.llms[index]``; its key comes from its environment variable."""
    key = None
    if endpoint.api_key_env:
        key = os.environ.get(endpoint.api_key_env)
        if not key:
            raise config_error(
                f"llms.{index}.api_key_env",
                f"the environment variable {endpoint.api_key_env} is not set",
                hint=f"export {endpoint.api_key_env}=<the key for {endpoint.base_url}>",
            )
    params: dict[str, object] = {
        **common,
        "model": endpoint.model,
        "base_url": endpoint.base_url,
        "api_key": key,
        "price": endpoint.price or settings.price_of(endpoint.model, remote=True),
        "max_concurrency": endpoint.max_concurrency,
    }
    if endpoint.timeout_s is not None:
        params["timeout"] = endpoint.timeout_s
    if endpoint.max_retries is not None:
        params["max_retries"] = endpoint.max_retries
    return OpenAICompatibleChatModel.model_validate(params)
