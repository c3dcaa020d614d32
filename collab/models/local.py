"""``LocalChatModel``: an in-process ``Engine`` as a LangChain chat model.

The engine owns tokens, KV cache and decoding; this class owns chat
templates, stop strings, tool calls (decoded under a grammar by
``collab.models.constrained``), structured output, usage and trace, and async
that never blocks the event loop.

Tool calling takes, beside OpenAI's ``tool_choice`` and ``parallel_tool_calls``
(a JSON array of one or more calls), ``score_tool_calls=True``: the reply's
``response_metadata["tool_call_logprob"]`` then says how likely the free model
finds the call it was held to. With ``tool_choice="auto"``,
``response_metadata["tool_call_probability"]`` is the probability the model
gave to calling at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from threading import Event
from typing import Any

import numpy as np
import numpy.typing as npt
from jinja2.sandbox import ImmutableSandboxedEnvironment
from langchain_core.language_models import LangSmithParams
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict, Field, PrivateAttr

from collab.errors import ConfigurationError
from collab.messages import TOOL_OPEN, chat_dicts, with_system_hint
from collab.models import constrained
from collab.models.base import Options, Stop, StreamFirstChatModel, to_score
from collab.models.catalog import calibrated_tool_call_threshold
from collab.models.decoding import RunStats, decode_text
from collab.models.engine import (
    TOP_N,
    Engine,
    Sampling,
    continuation_logprobs,
    eos_token,
    top_logprobs,
)
from collab.models.profile import ModelProfile
from collab.models.queue import ModelQueue, queue_of
from collab.models.tool_format import (
    JSON_OBJECT_SCHEMA,
    TOOL_CALL_MIN_TOKENS,
    bounded,
    check_tools,
    chosen_tool_names,
    opens_call,
    schema_of,
    schema_prompt,
)
from collab.options import check_options
from collab.trace import TRACE_KEY, ModelCall, Stopwatch, Trace

# tool_choice "none" right after tool results: small models answer the question then,
# instead of writing one more call or text about nothing
ANSWER_FROM_RESULTS = "Answer the user's question from the tool results above."


@dataclass
class _Request:
    """One call, planned: what to decode and how."""

    prompt_text: str
    call_prompt: str  # the prompt a call is decoded after (asks for a list when parallel)
    sampling: Sampling
    tools: list[dict[str, Any]]
    names: list[str] | None  # a call is required to one of these; None: the model may call
    schema: dict[str, Any] | None
    calls: constrained.CallSettings
    threshold: float
    no_call: bool = False  # an answer that must not open a call written as text


class LocalChatModel(StreamFirstChatModel):
    """An in-process model: ``LocalChatModel(engine=...)``, or a backend that loads its engine."""

    model: str = Field("", description="catalog name or path of the model")
    tool_call_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="with tool_choice='auto', call a tool when the model gives at least this "
        "probability to opening a call (small models rarely make it their top choice); "
        "None: the value calibrated for this model (its profile)",
    )
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    max_tokens: int = Field(512, ge=1)
    seed: int | None = None
    stop: list[str] | None = Field(None, alias="stop_sequences")

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)
    _engine: Engine | None = PrivateAttr(None)

    def __init__(self, *, engine: Engine | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._engine = engine
        if engine is not None and not self.model:
            self.model = engine.name

    @property
    def engine(self) -> Engine:
        """The engine; backends load theirs on first use."""
        if self._engine is None:
            self._engine = self._load_engine()
        return self._engine

    def _load_engine(self) -> Engine:
        raise ConfigurationError(
            f"{type(self).__name__} has no engine",
            hint="pass engine=..., or use LlamaCppChatModel / TransformersChatModel",
        )

    @property
    def _llm_type(self) -> str:
        return "collab-local"

    def collab_profile(self) -> ModelProfile:
        return ModelProfile(
            name=self.model, location=getattr(self.engine, "location", "local"),
            token_access="exact", prompt_logprobs=True,
            tool_call_threshold=calibrated_tool_call_threshold(self.model),
            token_prompts=True,
            context_length=self.engine.n_ctx,
        )  # fmt: skip

    # ---- LangChain plumbing -------------------------------------------------------

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=self._llm_type,
            ls_model_name=kwargs.get("model", self.model),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # ---- prompt rendering ---------------------------------------------------------

    def _native_tools(self, tools: list[dict[str, Any]] | None) -> bool:
        """Whether the chat template renders tools itself (and expects tagged calls)."""
        return bool(tools) and "tools" in self.engine.chat_template.template

    def render(
        self, messages: Sequence[BaseMessage], tools: list[dict[str, Any]] | None = None
    ) -> str:
        """The prompt text the model sees for ``messages`` (and ``tools``)."""
        template, bos, eos = self.engine.chat_template
        native_tools = self._native_tools(tools)
        return str(
            _jinja(template).render(
                messages=chat_dicts(messages, tools, native_tools=native_tools),
                tools=tools if native_tools else None,
                add_generation_prompt=True,
                bos_token=bos,
                eos_token=eos,
            )
        )

    def count_prompt_tokens(self, messages: Sequence[BaseMessage]) -> int:
        return len(self.engine.encode_prompt(self.render(messages)))

    # ---- generation -----------------------------------------------------------------

    def _plan(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Request:
        check_options(kwargs, type(self).__name__)
        if kwargs.get("model", self.model) != self.model:
            raise ConfigurationError(
                f"{self.model} is loaded in-process and cannot answer as {kwargs['model']!r}",
                hint=f"create another {type(self).__name__} for that model",
            )
        sampling = Sampling(
            temperature=float(kwargs.get("temperature", self.temperature)),
            top_p=float(kwargs.get("top_p", self.top_p)),
            top_k=int(kwargs.get("top_k", self.top_k)),
            max_tokens=int(kwargs.get("max_tokens") or self.max_tokens),
            seed=kwargs.get("seed", self.seed),
            stop=list(stop or self.stop or []),
        )
        tools: list[dict[str, Any]] = check_tools(kwargs.get("tools") or [])
        names = chosen_tool_names(tools, kwargs.get("tool_choice")) if tools else []
        schema = schema_of(kwargs.get("response_format"))
        offer = tools if names is None or names else None  # tool_choice "none" hides them
        # an answer, never a call written as text: tool_choice "none", or no tools
        # offered to a conversation that has called some
        no_call = (
            schema is None
            and offer is None
            and (bool(tools) or any(m.type == "tool" for m in messages))
        )
        if no_call and messages and messages[-1].type == "tool":
            messages = with_system_hint(messages, ANSWER_FROM_RESULTS)
        if schema is not None and schema is not JSON_OBJECT_SCHEMA:
            messages = with_system_hint(messages, schema_prompt(schema))
        calls = constrained.CallSettings(
            parallel=bool(kwargs.get("parallel_tool_calls", False)),
            score=bool(kwargs.get("score_tool_calls", False)),
        )
        prompt_text = self.render(messages, offer)
        # Several calls come out as a JSON list, which the prompt asks for; the
        # decision whether to call at all is taken on the plain prompt.
        call_prompt = (
            self.render(with_system_hint(messages, constrained.PARALLEL_HINT), offer)
            if calls.parallel and offer
            else prompt_text
        )
        threshold = kwargs.get("tool_call_threshold", self.tool_call_threshold)
        if threshold is None:
            threshold = self.collab_profile().tool_call_threshold
        return _Request(
            prompt_text, call_prompt, sampling, tools, names, schema, calls, threshold, no_call
        )

    def _run(
        self, messages: list[BaseMessage], stop: Stop, options: Options, cancel: Event
    ) -> Iterator[ChatGenerationChunk]:
        request = self._plan(messages, stop, options)
        stats = RunStats()
        watch = Stopwatch()
        with self.engine.lock:
            for message in self._decode(request, stats, cancel):
                watch.mark_first()
                yield ChatGenerationChunk(message=message)
        watch.stop()
        yield self._final_chunk(stats, watch)

    @property
    def queue(self) -> ModelQueue:
        """Where async callers wait their turn for this model (``collab.models.queue``)."""
        return queue_of(self.engine)

    async def _arun(
        self, messages: list[BaseMessage], stop: Stop, options: Options
    ) -> AsyncIterator[ChatGenerationChunk]:
        async with self.queue.slot():  # a worker thread only once it is this call's turn
            async for chunk in super()._arun(messages, stop, options):
                yield chunk

    def _decode(
        self, request: _Request, stats: RunStats, cancel: Event | None
    ) -> Iterator[AIMessageChunk]:
        """The answer's chunks: text, or a tool call. The caller holds the engine's lock."""
        engine = self.engine
        prompt = engine.encode_prompt(request.prompt_text)
        if request.names:  # a call is required: decode it under the grammar from the start
            yield self._call(request, request.names, stats)
        elif request.names is None:  # the model may call a tool
            if constrained.call_probability(engine, prompt, stats) >= request.threshold:
                yield self._call(request, None, stats)
            else:
                yield from self._text_or_call(request, prompt, stats, cancel)
        elif request.no_call:
            for piece in constrained.answer_not_call(
                engine, prompt, request.sampling, stats, cancel
            ):
                yield AIMessageChunk(content=piece)
        elif request.schema is not None:  # bounded, and with room to finish
            budget = max(request.sampling.max_tokens, TOOL_CALL_MIN_TOKENS)
            room = replace(request.sampling, max_tokens=budget)
            schema = bounded(request.schema)
            yield AIMessageChunk(
                content=constrained.json_under(engine, prompt, room, schema, stats, cancel)
            )
        else:
            for piece in decode_text(engine, prompt, request.sampling, None, stats, cancel):
                yield AIMessageChunk(content=piece)

    def _text_or_call(
        self,
        request: _Request,
        prompt: list[int],
        stats: RunStats,
        cancel: Event | None,
    ) -> Iterator[AIMessageChunk]:
        """A call is unlikely: text, unless the model opens a call anyway."""
        held = ""
        decided: bool | None = None
        for piece in decode_text(self.engine, prompt, request.sampling, None, stats, cancel):
            if decided is False:
                yield AIMessageChunk(content=piece)
                continue
            held += piece
            decided = opens_call(held)
            if decided:
                break
            if decided is False:
                yield AIMessageChunk(content=held)
        if decided:
            stats.prompt_tokens -= len(prompt)  # the prefilled prompt is counted instead
            yield self._call(request, None, stats)
        elif decided is None and held:
            yield AIMessageChunk(content=held)

    def call_opening(self, tools: list[dict[str, Any]]) -> str:
        """What the model writes before a call's JSON."""
        return TOOL_OPEN + "\n" if self._native_tools(tools) else ""

    def _call(self, request: _Request, names: list[str] | None, stats: RunStats) -> AIMessageChunk:
        text = constrained.forced_call(
            self.engine, request.call_prompt, self.call_opening(request.tools), request.sampling,
            request.tools, names, stats, request.calls,
        )  # fmt: skip
        return constrained.tool_call_message(self.model, text)

    def _final_chunk(self, stats: RunStats, watch: Stopwatch) -> ChatGenerationChunk:
        call = ModelCall(
            model=self.model,
            location="local",
            input_tokens=stats.prompt_tokens,
            output_tokens=stats.output_tokens,
            latency_s=watch.elapsed,
            time_to_first_token_s=watch.ttft,
        )
        trace = Trace(calls=[call], extra=self.engine.trace_extra())
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=trace.usage_metadata(),
                response_metadata={
                    "model_name": self.model,
                    "finish_reason": stats.finish_reason,
                    TRACE_KEY: trace.to_metadata(),
                    **stats.metadata,
                },
                chunk_position="last",
            ),
            generation_info={"finish_reason": stats.finish_reason},
        )

    # ---- token-level protocol -------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self.engine.tokenize(text, special=special)

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return self.engine.detokenize(tokens, special=special)

    def eos_token(self) -> int:
        """The id of the token that ends the model's turn."""
        return eos_token(self.engine)

    def logits(self, tokens: Sequence[int], first: int) -> npt.NDArray[np.float32]:
        """The engine's ``logits`` under its lock."""
        with self.engine.lock:
            return self.engine.logits(tokens, first)

    def continuation_logprobs(
        self, prompt: Sequence[int], continuation: Sequence[int]
    ) -> list[float]:
        if not to_score(prompt, continuation):
            return []
        with self.engine.lock:
            return [float(x) for x in continuation_logprobs(self.engine, prompt, continuation)]

    def next_token_logprobs(self, prompt: Sequence[int], k: int) -> list[tuple[int, float]]:
        logp, top = top_logprobs(self.logits(prompt, len(prompt) - 1), k)
        return [(int(t), float(logp[0, t])) for t in top[0]]

    def prompt_logprob_rows(
        self, tokens: list[int], *, first: int = 0, text: str | None = None
    ) -> list[dict[int, float]]:
        """For each position i from ``first``: the top log-probabilities of the token at
        i + 1, and that token's own (the last row: the token after ``tokens``), as a
        server's prompt log-probabilities give them. ``text`` is ignored (exact tokens)."""
        logp, top = top_logprobs(self.logits(tokens, first), TOP_N)
        rows = []
        for i, ids in enumerate(top):
            row = {int(t): float(logp[i, t]) for t in ids}
            if first + i + 1 < len(tokens):
                token = tokens[first + i + 1]
                row[token] = float(logp[i, token])
            rows.append(row)
        return rows


_JINJA = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)


def _raise(message: str) -> None:
    raise ConfigurationError(
        f"the model's chat template refuses this conversation: {message}",
        hint="check the order of roles (system first, user and assistant alternating)",
    )


_JINJA.globals["raise_exception"] = _raise
_JINJA.policies["json.dumps_kwargs"] = {"ensure_ascii": False}
_TEMPLATES: dict[str, Any] = {}


def _jinja(template: str) -> Any:
    if template not in _TEMPLATES:
        _TEMPLATES[template] = _JINJA.from_string(template)
    return _TEMPLATES[template]
