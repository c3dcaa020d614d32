"""Any OpenAI-compatible server (OpenAI, vLLM, SGLang, llama.cpp, Ollama) as a chat model.

Async-native over the openai SDK, which supplies timeouts and retries with
backoff on 429, 5xx and connection errors. What the server can do (tool
calls, usage in streams, prompt log-probabilities) is probed, not assumed,
and kept in a ``ServerCapabilities``.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from collab.errors import (
    CapabilityError,
    CollabError,
    ConfigurationError,
    ContextLengthError,
    ModelUnavailableError,
    TextRoundTripError,
)
from collab.models.base import (
    TOOL_CALL_MIN_TOKENS,
    StreamFirstChatModel,
    ToolChoice,
    ToolLike,
    bounded,
    chat_dicts,
    chosen_tool_names,
    opens_call,
    schema_prompt,
    split_tool_call_text,
    text_content,
    to_openai_messages,
    to_openai_tools,
    tool_call_schema,
)
from collab.models.structured import structured_output
from collab.trace import TRACE_KEY, ModelCall, Price, Stopwatch, Trace

_SDK_CHAT_PARAMS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "seed", "stop", "tools",
        "tool_choice", "response_format", "logprobs", "top_logprobs", "n", "presence_penalty",
        "frequency_penalty", "logit_bias", "user", "parallel_tool_calls", "extra_headers",
        "extra_query", "timeout",
    }
)  # fmt: skip
PromptLogprobStyle = Literal["echo", "echo-shifted", "vllm"]
TOP_N = 20  # top log-probabilities asked of servers that report only the top N
UNNAMED = -1  # a row's key for tokens the server named only by ambiguous text
ServerKind = Literal["openai", "vllm", "llama-cpp-python", "llama.cpp", "ollama", "unknown"]


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
    if kind == "vllm":
        return ServerCapabilities(kind=kind, prompt_logprobs="vllm", tokenize_path="/tokenize")
    if kind == "llama.cpp":
        return ServerCapabilities(kind=kind, tokenize_path="/tokenize")
    return ServerCapabilities(kind=kind)


@dataclass
class _Plan:
    body: dict[str, Any]
    tools: list[dict[str, Any]]
    threshold: float
    prompted: bool = False  # tool calls come back as text, parsed here
    forced: bool = False  # the reply is constrained to one tool call
    probe: bool = False  # ask first whether a call is likely


def _schema_in(response_format: Any) -> dict[str, Any] | None:
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        inner = response_format.get("json_schema", {})
        schema = inner.get("schema", inner)
        return schema if isinstance(schema, dict) else None
    return None


def with_system_hint_dicts(messages: list[dict[str, Any]], hint: str) -> list[dict[str, Any]]:
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": f"{text_content(messages[0].get('content'))}\n\n{hint}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": hint}, *messages]


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
    tool_call_threshold: float = Field(
        0.002,
        ge=0.0,
        le=1.0,
        description="servers that parse no tool calls: with tool_choice='auto', call a tool "
        "when the model gives at least this probability to opening a call",
    )
    capabilities: ServerCapabilities | None = Field(None, description="None: probe on first use")

    model_config = ConfigDict(populate_by_name=True)

    _client: openai.OpenAI | None = PrivateAttr(None)
    _aclient: openai.AsyncOpenAI | None = PrivateAttr(None)
    _token_of_text: dict[str, int | None] = PrivateAttr(default_factory=dict)

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
            "base_url": self.base_url,
            "api_key": key,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(**self._client_kwargs())
        return self._client

    @property
    def aclient(self) -> openai.AsyncOpenAI:
        if self._aclient is None:
            self._aclient = openai.AsyncOpenAI(**self._client_kwargs())
        return self._aclient

    def _error(self, exc: Exception) -> CollabError:
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

    # ---- capability probe ----------------------------------------------------------

    def server_capabilities(self) -> ServerCapabilities:
        """What the server can do; probed once (one GET /models) and cached."""
        if self.capabilities is None:
            try:
                page = self.client.models.list()
                owned = next((m.owned_by for m in page.data if m.id == self.model), None)
                owned = owned or (page.data[0].owned_by if page.data else "")
            except openai.APIError as exc:
                raise self._error(exc) from exc
            self.capabilities = capabilities_for(_kind_from_models(owned or "", self.base_url))
        return self.capabilities

    # ---- request building ------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[ToolLike],
        *,
        tool_choice: ToolChoice = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        specs = to_openai_tools(tools)
        chosen_tool_names(specs, tool_choice)
        return self.bind(tools=specs, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        return structured_output(self, schema, method=method, include_raw=include_raw, **kwargs)

    def _plan(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Plan:
        """How to ask the server: the request body, and how tool calls come back."""
        caps = self.server_capabilities()
        tools: list[dict[str, Any]] = kwargs.pop("tools", None) or []
        names = chosen_tool_names(tools, kwargs.pop("tool_choice", None)) if tools else []
        threshold = float(kwargs.pop("tool_call_threshold", self.tool_call_threshold))
        body: dict[str, Any] = {"model": kwargs.pop("model", self.model)}
        for name in ("temperature", "top_p", "max_tokens", "seed"):
            value = kwargs.pop(name, getattr(self, name))
            if value is not None:
                body[name] = value
        if stop or self.stop:
            body["stop"] = stop or self.stop
        body.update(kwargs)  # response_format, logprobs, extra_body, ...
        plan = _Plan(body=body, tools=tools, threshold=threshold)
        if tools and names != [] and not caps.native_tools:
            # The server parses no tool calls: teach the format in the prompt, and
            # constrain the reply to a call when one is required (or likely).
            plan.prompted = True
            body["messages"] = chat_dicts(messages, tools, native_tools=False)
            if names:
                self._force_call(plan, names)
            else:
                plan.probe = True
        else:
            body["messages"] = to_openai_messages(messages)
            if tools and names != []:
                body["tools"] = tools
                if names is not None:
                    body["tool_choice"] = (
                        "required"
                        if len(names) > 1
                        else {"type": "function", "function": {"name": names[0]}}
                    )
        schema = _schema_in(body.get("response_format"))
        if schema is not None and caps.json_schema_format == "llama-cpp-python":
            # A weaker server: bound the schema, show it to the model, leave room to
            # finish; and speak its dialect (json_object with a schema).
            body["response_format"] = {"type": "json_object", "schema": bounded(schema)}
            if not plan.forced:
                body["messages"] = with_system_hint_dicts(body["messages"], schema_prompt(schema))
            body["max_tokens"] = max(body.get("max_tokens") or 0, TOOL_CALL_MIN_TOKENS)
        extra = {**caps.neutral_sampling, **body.pop("extra_body", {})}
        for key in [k for k in body if k not in _SDK_CHAT_PARAMS]:
            extra[key] = body.pop(key)  # top_k, min_p, ...: server-specific, sent as-is
        if extra:
            body["extra_body"] = extra
        return plan

    def _force_call(self, plan: _Plan, names: list[str] | None) -> None:
        names = names or [t["function"]["name"] for t in plan.tools]
        plan.forced, plan.probe = True, False
        plan.body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "tool_call", "schema": tool_call_schema(plan.tools, names)},
        }
        if self.server_capabilities().json_schema_format == "llama-cpp-python":
            schema = plan.body["response_format"]["json_schema"]["schema"]
            plan.body["response_format"] = {"type": "json_object", "schema": schema}
        # A call cut short is no call: give it room to close its JSON.
        plan.body["max_tokens"] = max(plan.body.get("max_tokens") or 0, TOOL_CALL_MIN_TOKENS)

    def _probe_body(self, plan: _Plan) -> dict[str, Any]:
        """One token with its top log-probabilities: is a tool call likely?"""
        keep = {k: v for k, v in plan.body.items() if k in ("model", "messages", "extra_body")}
        return {**keep, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                "top_logprobs": TOP_N}  # fmt: skip

    def _after_probe(self, plan: _Plan, response: Any) -> None:
        choice = response.choices[0]
        tops = choice.logprobs.content[0].top_logprobs if choice.logprobs else []
        p_open = sum(
            math.exp(t.logprob)
            for t in tops
            # a code fence opens code more often than a call: not counted
            if opens_call(t.token) is not False and t.token.strip("` \n")
        )
        if p_open >= plan.threshold:
            self._force_call(plan, None)

    # ---- generation ----------------------------------------------------------------------

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        plan = self._plan(messages, stop, kwargs)
        try:
            if plan.probe:
                self._after_probe(
                    plan, self.client.chat.completions.create(**self._probe_body(plan))
                )
            assembler = _StreamAssembler(self, plan)
            stream = self.client.chat.completions.create(
                stream=True, **self._stream_args(), **plan.body
            )
            for event in stream:
                for chunk in assembler.feed(event.model_dump()):
                    if run_manager and isinstance(chunk.message.content, str):
                        run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
                    yield chunk
        except openai.APIError as exc:
            raise self._error(exc) from exc
        yield from assembler.finish(self._estimate_usage(messages, assembler))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        plan = self._plan(messages, stop, kwargs)
        try:
            if plan.probe:
                probe = await self.aclient.chat.completions.create(**self._probe_body(plan))
                self._after_probe(plan, probe)
            assembler = _StreamAssembler(self, plan)
            stream = await self.aclient.chat.completions.create(
                stream=True, **self._stream_args(), **plan.body
            )
            async for event in stream:
                for chunk in assembler.feed(event.model_dump()):
                    if run_manager and isinstance(chunk.message.content, str):
                        await run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
                    yield chunk
        except openai.APIError as exc:
            raise self._error(exc) from exc
        for chunk in assembler.finish(self._estimate_usage(messages, assembler)):
            yield chunk

    def _stream_args(self) -> dict[str, Any]:
        if self.server_capabilities().stream_usage:
            return {"stream_options": {"include_usage": True}}
        return {}

    def _estimate_usage(self, messages: list[BaseMessage], assembler: _StreamAssembler) -> int:
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
        root = self.base_url.rstrip("/").removesuffix("/v1")
        url = root + path
        headers = {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        try:
            response = httpx.post(url, json=payload, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ModelUnavailableError(
                f"cannot reach {url}: {exc}", hint="start the server or fix the base URL"
            ) from exc
        if response.status_code >= 400:
            raise CapabilityError(
                f"{url} answered {response.status_code}: {response.text[:300]}",
                hint="this server does not offer the endpoint collab needs",
            )
        data: dict[str, Any] = response.json()
        return data

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        path = self.server_capabilities().tokenize_path
        if path is None:
            raise CapabilityError(
                f"{self.base_url} ({self.server_capabilities().kind}) offers no tokenize endpoint",
                hint="use a llama.cpp, llama-cpp-python or vLLM server for token-level work",
            )
        if path == "/extras/tokenize":
            return list(self._post(path, {"input": text, "model": self.model})["tokens"])
        return list(self._post(path, {"content": text, "prompt": text})["tokens"])

    def detokenize(self, tokens: Sequence[int]) -> str:
        path = self.server_capabilities().tokenize_path
        if path == "/extras/tokenize":
            return str(self._post("/extras/detokenize", {"tokens": list(tokens)})["text"])
        if path is None:
            raise CapabilityError(f"{self.base_url} offers no detokenize endpoint")
        data = self._post("/detokenize", {"tokens": list(tokens)})
        return str(data.get("content", data.get("prompt", "")))

    def continuation_logprobs(
        self, prompt: Sequence[int], continuation: Sequence[int]
    ) -> list[float]:
        if not prompt:
            raise ValueError("continuation_logprobs needs at least one prompt token")
        if not continuation:
            return []
        rows = self.prompt_logprob_rows([*prompt, *continuation], first=len(prompt) - 1)
        out = []
        for token, row in zip(continuation, rows, strict=False):
            value = row.get(token)
            if value is None:
                raise CapabilityError(
                    f"{self.base_url} reports only its top {TOP_N} log-probabilities and "
                    f"token {token} is not among them",
                    hint="exact log-probabilities of unlikely tokens need an in-process "
                    "model or a vLLM server (prompt_logprobs)",
                )
            out.append(value)
        return out

    def next_token_logprobs(self, prompt: Sequence[int], k: int) -> list[tuple[int, float]]:
        row = self.prompt_logprob_rows(list(prompt), first=len(prompt) - 1)[-1]
        return sorted(((t, v) for t, v in row.items() if t != UNNAMED), key=lambda p: -p[1])[:k]

    def completion_prompt(self, tokens: list[int], text: str | None = None) -> list[int] | str:
        """The prompt as token ids, or as text that the server tokenizes to exactly those ids.

        ``text``: the tokens written out by the caller, for text-only servers whose
        own detokenizer drops control tokens (llama-cpp-python's does).
        """
        if self.server_capabilities().token_prompts:
            return tokens
        text = self.detokenize(tokens) if text is None else text
        if self.tokenize(text) != tokens:
            raise TextRoundTripError(
                f"{self.base_url} takes text prompts only, and these tokens do not survive "
                "a round trip through text",
                hint="pass token sequences the tokenizer itself produced",
            )
        return text

    def prompt_logprob_rows(
        self, tokens: list[int], *, first: int = 0, text: str | None = None
    ) -> list[dict[int, float]]:
        """For each position i from ``first``: log-probabilities of the token at i + 1.

        The last row is for the token after all of ``tokens``. Each row holds the
        server's top N by token id; a row is empty where the server reports nothing
        (llama-cpp-python leaves its BOS token out). Where the top N named a token
        only by a text that is not one token (a control token, part of a UTF-8
        character), the row's ``UNNAMED`` entry is the most such a token can have:
        if it is the row's maximum, the argmax is unknown. ``text``: see
        ``completion_prompt``.
        """
        caps = self.server_capabilities()
        styles: list[PromptLogprobStyle] = (
            [caps.prompt_logprobs] if caps.prompt_logprobs else ["echo", "vllm"]
        )
        prompt = self.completion_prompt(tokens, text)
        for style in styles:
            try:
                rows = self._prompt_logprobs_via(style, tokens, prompt, first)
            except (openai.BadRequestError, openai.UnprocessableEntityError, KeyError, TypeError,
                    IndexError, AttributeError):  # fmt: skip
                continue
            except openai.APIError as exc:
                raise self._error(exc) from exc
            caps.prompt_logprobs = style
            return rows
        raise CapabilityError(
            f"{self.base_url} ({caps.kind}) returns no prompt-token log-probabilities",
            hint="start llama-cpp-python's server with --logits_all true, or use vLLM "
            "(prompt_logprobs)",
        )

    def greedy_next(self, tokens: list[int], text: str | None = None) -> int | None:
        """The server's own greedy choice after ``tokens``; None: it ends the text there.

        For positions where ``prompt_logprob_rows`` cannot name the argmax.
        """
        try:
            response = self.client.completions.create(
                model=self.model, prompt=self.completion_prompt(tokens, text), max_tokens=1,
                temperature=0.0, extra_body=self.server_capabilities().neutral_sampling,
            )  # fmt: skip
        except openai.APIError as exc:
            raise self._error(exc) from exc
        choice = response.choices[0]
        if choice.finish_reason == "stop" and not choice.text:
            return None
        ids = self.tokenize(choice.text, special=False) if choice.text else []
        if len(ids) != 1:
            raise CapabilityError(
                f"{self.base_url} chose a token it reports only as {choice.text!r}, which "
                "names no single token",
                hint="verify with a server that takes token-id prompts (vLLM), or in-process",
            )
        return ids[0]

    def _prompt_logprobs_via(
        self, style: PromptLogprobStyle, tokens: list[int], prompt: list[int] | str, first: int
    ) -> list[dict[int, float]]:
        if style == "vllm":
            response = self.client.completions.create(
                model=self.model, prompt=prompt, max_tokens=1, temperature=0.0, logprobs=TOP_N,
                extra_body={"prompt_logprobs": TOP_N},
            )  # fmt: skip
            entries = (response.choices[0].model_extra or {})["prompt_logprobs"]
            rows = [
                {int(t): float(v["logprob"]) for t, v in entry.items()}
                for entry in entries[first + 1 :]
            ]
            last = response.choices[0].logprobs
            assert last is not None and last.top_logprobs
            rows.append(self._named(last.top_logprobs[0]))
            return rows
        response = self.client.completions.create(
            model=self.model, prompt=prompt, max_tokens=1, echo=True, logprobs=TOP_N,
            temperature=0.0,
        )  # fmt: skip
        lp = response.choices[0].logprobs
        assert lp is not None and lp.top_logprobs is not None and lp.tokens is not None
        n = len(tokens)
        if style == "echo-shifted":
            positions = _echoed_positions(tokens, len(lp.top_logprobs), self.base_url)
            by_position = dict(zip(positions, lp.top_logprobs, strict=True))
            return [self._named(by_position.get(i) or {}) for i in range(first, n)]
        # OpenAI's legacy semantics: top_logprobs[i] is the distribution of token i.
        assert lp.token_logprobs is not None
        rows = []
        for i in range(first, n):
            row = self._named(lp.top_logprobs[i + 1] or {})
            if i + 1 < n:
                row[tokens[i + 1]] = float(lp.token_logprobs[i + 1])
            rows.append(row)
        return rows

    def _named(self, top: dict[str, float]) -> dict[int, float]:
        """Top log-probabilities keyed by token id; see ``prompt_logprob_rows`` for UNNAMED."""
        out: dict[int, float] = {}
        unnamed = False
        for text, value in top.items():
            if text not in self._token_of_text:
                ids = self.tokenize(text, special=False) if text else []
                self._token_of_text[text] = ids[0] if len(ids) == 1 else None
            token = self._token_of_text[text]
            if token is None:
                unnamed = True
            else:
                out[token] = float(value)
        if unnamed:
            rest = 1.0 - sum(math.exp(v) for v in out.values())
            out[UNNAMED] = math.log(rest) if rest > 0 else -math.inf
        return out


def _echoed_positions(tokens: list[int], entries: int, where: str) -> list[int]:
    """Which prompt positions llama-cpp-python's echoed log-probabilities belong to.

    Its entry for position i is the distribution after token i, but it leaves out
    every position whose next token is its BOS token (and, when the prompt starts
    with BOS, drops that first one). Which token is BOS follows from the count.
    """
    n = len(tokens)
    if entries == n:
        return list(range(n))
    bos = tokens[0]
    skipped = {i for i in range(n - 1) if tokens[i + 1] == bos}
    if n - len(skipped) - 1 == entries:
        skipped.add(n - 1)  # the token it sampled after the prompt was BOS too
    if n - len(skipped) == entries:
        return [i for i in range(n) if i not in skipped]
    candidates = [t for t in set(tokens) if tokens.count(t) == n - entries]
    if len(candidates) == 1:
        return [i for i in range(n) if tokens[i] != candidates[0]]
    raise CapabilityError(
        f"{where} echoed {entries} log-probability entries for {n} prompt tokens, and "
        "they cannot be matched to positions",
        hint="use a server that takes token-id prompts (vLLM) for token-level work",
    )


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)
        return str(err)
    return str(exc.message)


class _StreamAssembler:
    """Turns OpenAI stream events into LangChain chunks, with usage and the trace."""

    def __init__(self, owner: OpenAICompatibleChatModel, plan: _Plan) -> None:
        self.owner = owner
        self.prompted = plan.prompted
        self.forced = plan.forced
        self.watch = Stopwatch()
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.content_events = 0
        self.held = ""  # prompted mode: text that may still turn into a tool call
        self.deciding = plan.prompted

    def _chunk(self, message: AIMessageChunk) -> ChatGenerationChunk:
        self.watch.mark_first()
        return ChatGenerationChunk(message=message)

    def feed(self, event: dict[str, Any]) -> Iterator[ChatGenerationChunk]:
        if event.get("usage"):
            self.usage = event["usage"]
        for choice in event.get("choices") or []:
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            if text:
                self.content_events += 1
                if self.deciding or self.forced:
                    self.held += text
                    if self.forced or opens_call(self.held) is not False:
                        continue  # a call (or not yet known): keep it until the end
                    self.deciding = False
                    text, self.held = self.held, ""
                yield self._chunk(AIMessageChunk(content=text))
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") or {}
                yield self._chunk(
                    AIMessageChunk(
                        content="",
                        tool_call_chunks=[
                            tool_call_chunk(
                                name=fn.get("name"),
                                args=fn.get("arguments"),
                                id=call.get("id"),
                                index=call.get("index", 0),
                            )
                        ],
                    )
                )

    def finish(self, estimated_prompt_tokens: int) -> Iterator[ChatGenerationChunk]:
        if self.held:
            call = None
            if self.forced or opens_call(self.held):
                call = split_tool_call_text(self.held)
            if call is None:
                yield self._chunk(AIMessageChunk(content=self.held))
            else:
                self.finish_reason = "tool_calls"
                yield self._chunk(
                    AIMessageChunk(
                        content="",
                        tool_call_chunks=[
                            tool_call_chunk(
                                name=call["name"],
                                args=json.dumps(call["args"], ensure_ascii=False),
                                id=call["id"],
                                index=0,
                            )
                        ],
                    )
                )
        self.watch.stop()
        owner = self.owner
        if self.usage:
            prompt_tokens = int(self.usage.get("prompt_tokens") or 0)
            output_tokens = int(self.usage.get("completion_tokens") or 0)
        else:
            prompt_tokens, output_tokens = estimated_prompt_tokens, self.content_events
        call_record = ModelCall(
            model=owner.model,
            location="remote",
            input_tokens=prompt_tokens,
            output_tokens=output_tokens,
            latency_s=self.watch.elapsed,
            time_to_first_token_s=self.watch.ttft,
            cost_usd=owner.price.cost(prompt_tokens, output_tokens),
        )
        trace = Trace(calls=[call_record])
        metadata: dict[str, Any] = {
            "model_name": owner.model,
            "finish_reason": self.finish_reason or "stop",
            TRACE_KEY: trace.to_metadata(),
        }
        if not self.usage:
            metadata["usage_estimated"] = True
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=trace.usage_metadata(),
                response_metadata=metadata,
                chunk_position="last",
            ),
            generation_info={"finish_reason": metadata["finish_reason"]},
        )
