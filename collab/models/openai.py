"""Any OpenAI-compatible server (OpenAI, vLLM, SGLang, llama.cpp, Ollama) as a chat model.

Async-native over the openai SDK, which supplies timeouts and retries with
backoff on 429, 5xx and connection errors, for every HTTP call collab makes.
What the server can do is probed once per endpoint
(``collab.models.server_probe``); requests are planned and streams read in
``collab.models.openai_request``; prompt log-probabilities come from
``collab.models.prompt_logprobs``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import nullcontext
from threading import Event
from typing import Any

import httpx
import openai
from langchain_core.language_models import LangSmithParams
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from collab.errors import (
    CapabilityError,
    CollabError,
    ConfigurationError,
    ContextLengthError,
    ModelOutputError,
    ModelUnavailableError,
)
from collab.models import wire
from collab.models.base import Options, Stop, StreamFirstChatModel, to_score
from collab.models.breaker import breaker_for
from collab.models.openai_request import (
    Plan,
    StreamAssembler,
    call_probability,
    force_call,
    plan_request,
    probe_body,
)
from collab.models.profile import ModelProfile, TokenAccess, location_of
from collab.models.prompt_logprobs import UNNAMED, PromptLogprobReader
from collab.models.queue import endpoint_queue
from collab.models.server_probe import ServerCapabilities, probe
from collab.options import REMOTE_ONLY, check_options
from collab.trace import Location, Price


class OpenAICompatibleChatModel(StreamFirstChatModel):
    """A chat model behind an OpenAI-compatible HTTP API."""

    model: str = Field(description="model name the server knows")
    base_url: str = Field(description="for example http://127.0.0.1:8000/v1")
    api_key: SecretStr | None = None
    timeout: float = Field(60.0, gt=0, description="seconds per attempt")
    max_retries: int = Field(3, ge=0)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = Field(None, alias="stop_sequences")
    price: Price = Field(default_factory=Price, description="per million tokens")
    max_concurrency: int | None = Field(
        None, ge=1, description="async requests in flight here at once; the rest wait in order"
    )
    tool_call_threshold: float = Field(
        0.002, ge=0.0, le=1.0,
        description="servers that parse no tool calls: with tool_choice='auto', call a tool "
        "when the model gives at least this probability to opening a call",
    )  # fmt: skip
    capabilities: ServerCapabilities | None = Field(None, description="None: probe on first use")
    location: Location | None = Field(
        None,
        description="where the data goes: 'local' or 'remote'; None: local when base_url is a "
        "loopback address",
    )

    model_config = ConfigDict(populate_by_name=True)

    _client: openai.OpenAI | None = PrivateAttr(None)
    _aclient: tuple[asyncio.AbstractEventLoop, openai.AsyncOpenAI] | None = PrivateAttr(None)
    _reader: PromptLogprobReader | None = PrivateAttr(None)

    @property
    def _llm_type(self) -> str:
        return "openai-compatible"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="openai-compatible",
            ls_model_name=kwargs.get("model", self.model),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
        )
        if (max_tokens := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # ---- clients and errors ------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        key = self.api_key.get_secret_value() if self.api_key else "not-needed"
        return {
            "base_url": self.base_url, "api_key": key, "timeout": self.timeout,
            "max_retries": self.max_retries,
        }  # fmt: skip

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(**self._client_kwargs(), http_client=wire.http_client())
        return self._client

    @property
    def aclient(self) -> openai.AsyncOpenAI:
        """The async client of the running event loop (its connections belong to that loop)."""
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient[0] is not loop:
            client = openai.AsyncOpenAI(
                **self._client_kwargs(), http_client=wire.async_http_client()
            )
            self._aclient = (loop, client)
        return self._aclient[1]

    def _error(self, exc: Exception) -> CollabError:
        """The SDK's error as collab's: whose fault it is, and what to do."""
        where = f"{self.model} at {self.base_url}"
        attempts = self.max_retries + 1
        if isinstance(exc, openai.APITimeoutError):
            return ModelUnavailableError(
                f"{where} did not answer within {self.timeout:g}s ({attempts} attempts)",
                hint="check the server, or raise the timeout (COLLAB_LLM_TIMEOUT_S)",
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelUnavailableError(
                f"cannot reach {where} after {attempts} attempts: {exc.__cause__ or exc}",
                hint="start the server or fix COLLAB_LLM_BASE_URL",
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ConfigurationError(
                f"{where} refused the API key ({exc.status_code})",
                hint="set COLLAB_LLM_API_KEY (or OPENAI_API_KEY) to a valid key",
            )
        if isinstance(exc, openai.NotFoundError):
            return ConfigurationError(
                f"{where} answered 404: {_detail(exc)}",
                hint="check the model name (COLLAB_LLM) and that base_url ends in /v1",
            )
        if isinstance(exc, openai.APIStatusError):
            detail = _detail(exc)
            if exc.status_code in (400, 413) and "context" in detail.lower():
                return ContextLengthError(
                    f"{where} says the prompt is too long: {detail}",
                    hint="shorten the conversation or use a model with a longer context",
                )
            if exc.status_code >= 500 or exc.status_code == 429:
                return ModelUnavailableError(
                    f"{where} failed with {exc.status_code} after {attempts} attempts: {detail}",
                    hint="the server is overloaded or broken; retry later",
                )
            return ConfigurationError(
                f"{where} rejected the request ({exc.status_code}): {detail}",
                hint="the server does not accept one of the parameters sent",
            )
        return ModelUnavailableError(f"{where} failed: {exc}")

    # ---- capability probe and profile ----------------------------------------------

    def server_capabilities(self) -> ServerCapabilities:
        """What the server can do; probed once per endpoint (one GET /models) and kept."""
        if self.capabilities is None:
            try:
                self.capabilities = probe(self.client, self.model, self.base_url)
            except openai.APIError as exc:
                raise self._error(exc) from exc
        return self.capabilities

    def collab_profile(self) -> ModelProfile:
        caps = self.server_capabilities()
        access: TokenAccess = "none"
        if caps.prompt_logprobs is not None:
            access = "exact" if caps.prompt_logprobs_exact else "top_n"
        return ModelProfile(
            name=self.model, location=location_of(self), token_access=access,
            prompt_logprobs=caps.prompt_logprobs is not None, token_prompts=caps.token_prompts,
            price=self.price,
        )  # fmt: skip

    # ---- request building ------------------------------------------------------------

    def _plan(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Plan:
        check_options(kwargs, type(self).__name__, extra=REMOTE_ONLY)
        kwargs.pop("ls_structured_output_format", None)
        defaults = {
            "model": self.model, "temperature": self.temperature, "top_p": self.top_p,
            "max_tokens": self.max_tokens, "seed": self.seed, "stop": stop or self.stop,
            "tool_call_threshold": self.tool_call_threshold,
        }  # fmt: skip
        return plan_request(self.server_capabilities(), messages, defaults, kwargs)

    def _after_probe(self, plan: Plan, response: Any) -> None:
        p_open = call_probability(response)
        if p_open is None:  # no log-probabilities: the reply itself says whether it is a call
            self.server_capabilities().call_probe = False
            plan.probe = False
            return
        if p_open >= plan.threshold:
            force_call(plan, self.server_capabilities(), None)

    # ---- generation ----------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.model} at {self.base_url}"

    def _run(
        self, messages: list[BaseMessage], stop: Stop, options: Options, cancel: Event
    ) -> Iterator[ChatGenerationChunk]:
        self.client  # noqa: B018 (a stand-in server starts here and learns its URL)
        breaker = breaker_for(self.base_url)
        breaker.before_call(self._where)
        try:
            plan = self._plan(messages, stop, options)
            if plan.probe:
                self._probe(plan)
            assembler = StreamAssembler(self.model, self.price, plan)
            try:
                stream = self.client.chat.completions.create(
                    stream=True, **self._stream_args(), **plan.body
                )
            except openai.APIError as exc:
                raise self._error(exc) from exc
            try:
                for event in stream:
                    yield from assembler.feed(event.model_dump())
            except Exception as exc:
                raise self._broken(exc) from exc
            if assembler.finish_reason is None and not assembler.content_events:
                self._diagnose(plan)
            yield from assembler.finish(self._estimate_usage(messages, assembler))
        except ModelUnavailableError as exc:
            breaker.failed(exc.message)
            raise
        breaker.succeeded()

    async def _arun(
        self, messages: list[BaseMessage], stop: Stop, options: Options
    ) -> AsyncIterator[ChatGenerationChunk]:
        limit = self.max_concurrency
        async with endpoint_queue(self.base_url, limit).slot() if limit else nullcontext():
            async for chunk in self._arun_now(messages, stop, options):
                yield chunk

    async def _arun_now(
        self, messages: list[BaseMessage], stop: Stop, options: Options
    ) -> AsyncIterator[ChatGenerationChunk]:
        self.aclient  # noqa: B018 (a stand-in server starts here and learns its URL)
        breaker = breaker_for(self.base_url)
        breaker.before_call(self._where)
        try:
            plan = self._plan(messages, stop, options)
            if plan.probe:
                await asyncio.to_thread(self._probe, plan)
            assembler = StreamAssembler(self.model, self.price, plan)
            try:
                stream = await self.aclient.chat.completions.create(
                    stream=True, **self._stream_args(), **plan.body
                )
            except openai.APIError as exc:
                raise self._error(exc) from exc
            try:
                async for event in stream:
                    for chunk in assembler.feed(event.model_dump()):
                        yield chunk
            except Exception as exc:
                raise self._broken(exc) from exc
            if assembler.finish_reason is None and not assembler.content_events:
                await asyncio.to_thread(self._diagnose, plan)
            for chunk in assembler.finish(self._estimate_usage(messages, assembler)):
                yield chunk
        except ModelUnavailableError as exc:
            breaker.failed(exc.message)
            raise
        breaker.succeeded()

    def _broken(self, exc: Exception) -> CollabError:
        """An error while the answer streamed: the server was reached, then stopped."""
        if isinstance(exc, CollabError):
            return exc
        return ModelUnavailableError(
            f"{self._where} stopped answering part way through the stream: "
            f"{type(exc).__name__}: {exc}",
            hint="the server died or dropped the connection; check its log",
        )

    def _diagnose(self, plan: Plan) -> None:
        """A stream that ended with no events: ask once without streaming, which says why
        (llama-cpp-python's server answers 200 and an empty stream to a prompt over its
        context, and 400 to the same request unstreamed)."""
        body = {**plan.body, "max_tokens": 1}
        try:
            self.client.with_options(max_retries=1).chat.completions.create(**body)
        except openai.APIError as exc:
            raise self._error(exc) from exc

    def _probe(self, plan: Plan) -> None:
        """Ask whether a tool call is likely (one token, its top log-probabilities), once
        without retries; a server that cannot say is not asked again."""
        caps = self.server_capabilities()
        try:
            response = self.client.with_options(max_retries=0).chat.completions.create(
                **probe_body(plan)
            )
        except (openai.InternalServerError, openai.BadRequestError,
                openai.UnprocessableEntityError):  # fmt: skip
            caps.call_probe = False
            plan.probe = False  # the reply itself says whether it is a call
            return
        except openai.APIError as exc:
            raise self._error(exc) from exc
        self._after_probe(plan, response)

    def _stream_args(self) -> dict[str, Any]:
        if self.server_capabilities().stream_usage:
            return {"stream_options": {"include_usage": True}}
        return {}

    def _estimate_usage(self, messages: list[BaseMessage], assembler: StreamAssembler) -> int:
        """Prompt tokens when the stream did not say: the messages' text, tokenized remotely."""
        if assembler.usage is not None:
            return 0
        text = "\n".join(str(m.content) for m in messages)
        try:
            return len(self.tokenize(text)) + 4 * len(messages)
        except CollabError:
            return math.ceil(len(text) / 4)

    # ---- token-level protocol --------------------------------------------------------

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST to a path at the server's root (outside /v1), with the SDK's retries."""
        url = self.base_url.rstrip("/").removesuffix("/v1") + path
        try:
            data = self.client.post(url, body=payload, cast_to=httpx.Response).json()
        except openai.NotFoundError as exc:
            raise CapabilityError(
                f"{url} answered 404", hint="this server does not offer the endpoint collab needs"
            ) from exc
        except openai.APIError as exc:
            raise self._error(exc) from exc
        except ValueError as exc:
            raise ModelOutputError(f"{url} answered with something that is not JSON") from exc
        if not isinstance(data, dict):
            raise ModelOutputError(f"{url} answered {data!r}, not a JSON object")
        return data

    def _endpoint(self, path: str, payload: dict[str, Any], key: str) -> Any:
        data = self._post(path, payload)
        if key not in data:
            raise ModelOutputError(f"{self.base_url}{path} answered without {key!r}: {data}")
        return data[key]

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        path = self.server_capabilities().tokenize_path
        if path is None:
            raise CapabilityError(
                f"{self.base_url} ({self.server_capabilities().kind}) offers no tokenize endpoint",
                hint="use a llama.cpp, llama-cpp-python or vLLM server for token-level work",
            )
        if path == "/extras/tokenize":
            return [int(t) for t in self._endpoint(path, {"input": text, "model": self.model},
                                                   "tokens")]  # fmt: skip
        return [int(t) for t in self._endpoint(path, {"content": text, "prompt": text}, "tokens")]

    def detokenize(self, tokens: Sequence[int]) -> str:
        path = self.server_capabilities().tokenize_path
        if path == "/extras/tokenize":
            return str(self._endpoint("/extras/detokenize", {"tokens": list(tokens)}, "text"))
        if path is None:
            raise CapabilityError(f"{self.base_url} offers no detokenize endpoint")
        data = self._post("/detokenize", {"tokens": list(tokens)})
        return str(data.get("content", data.get("prompt", "")))

    @property
    def reader(self) -> PromptLogprobReader:
        """Prompt log-probabilities from this server."""
        if self._reader is None:
            self._reader = PromptLogprobReader(
                client=self.client, model=self.model, base_url=self.base_url,
                caps=self.server_capabilities(), tokenize=self.tokenize,
                detokenize=self.detokenize, error=self._error,
            )  # fmt: skip
        return self._reader

    def prompt_logprob_rows(
        self, tokens: list[int], *, first: int = 0, text: str | None = None
    ) -> list[dict[int, float]]:
        """See ``PromptLogprobReader.rows``."""
        return self.reader.rows(tokens, first=first, text=text)

    def greedy_next(self, tokens: list[int], text: str | None = None) -> int | None:
        """See ``PromptLogprobReader.greedy_next``."""
        return self.reader.greedy_next(tokens, text)

    def continuation_logprobs(
        self, prompt: Sequence[int], continuation: Sequence[int]
    ) -> list[float]:
        if not to_score(prompt, continuation):
            return []
        rows = self.prompt_logprob_rows([*prompt, *continuation], first=len(prompt) - 1)
        out = []
        for token, row in zip(continuation, rows, strict=False):
            value = row.get(token)
            if value is None:
                raise CapabilityError(
                    f"{self.base_url} reports only its top log-probabilities and "
                    f"token {token} is not among them",
                    hint="exact log-probabilities of unlikely tokens need an in-process "
                    "model or a vLLM server (prompt_logprobs)",
                )
            out.append(value)
        return out

    def next_token_logprobs(self, prompt: Sequence[int], k: int) -> list[tuple[int, float]]:
        row = self.prompt_logprob_rows(list(prompt), first=len(prompt) - 1)[-1]
        return sorted(((t, v) for t, v in row.items() if t != UNNAMED), key=lambda p: -p[1])[:k]


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)
        return str(err)
    return str(exc.message)
