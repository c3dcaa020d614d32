"""The chat-model surface shared by in-process backends (llama.cpp, transformers).

A backend supplies a few engine hooks (tokenize, a token generator with an
optional JSON-schema constraint, token bytes, end-of-generation test); this
class turns them into a LangChain chat model: chat templates, streaming with
stop strings, tool calls decoded under a grammar, structured output, usage
and trace, and async that never blocks the event loop.

Tool calling takes, beside OpenAI's ``tool_choice`` and ``parallel_tool_calls``
(a JSON array of one or more calls), ``score_tool_calls=True``: the reply's
``response_metadata["tool_call_logprob"]`` then says how likely the free model
finds the call it was held to, a confidence signal for repair or escalation.
With ``tool_choice="auto"``, ``response_metadata["tool_call_probability"]`` is
the probability the model gave to calling at all.
"""

from __future__ import annotations

import codecs
import json
import re
import threading
from abc import abstractmethod
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from jinja2.sandbox import ImmutableSandboxedEnvironment
from langchain_core.callbacks import (
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field

from collab.errors import ConfigurationError, ContextLengthError, ModelOutputError
from collab.models.base import (
    CALL_START,
    JSON_OBJECT_SCHEMA,
    TOOL_CALL_MIN_TOKENS,
    TOOL_OPEN,
    StreamFirstChatModel,
    ToolChoice,
    ToolLike,
    bounded,
    chat_dicts,
    chosen_tool_names,
    new_tool_call_id,
    opens_call,
    parse_tool_call,
    schema_prompt,
    to_openai_tools,
    tool_call_schema,
    with_system_hint,
)
from collab.models.structured import structured_output
from collab.trace import TRACE_KEY, ModelCall, Stopwatch, Trace

# For models whose GGUF carries no chat template.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class Sampling:
    """Decoding settings of one call. temperature 0 means greedy."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    max_tokens: int = 512
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class RunStats:
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = "stop"
    tokens: list[int] = field(default_factory=list)  # of the last decode
    metadata: dict[str, Any] = field(default_factory=dict)  # for response_metadata


# Most calls a reply with parallel_tool_calls=True may hold.
MAX_PARALLEL = 8
# Where the value of a call's "name" starts, in the JSON that a grammar let through.
NAME_VALUE = re.compile(r'"name"\s*:\s*"')
PARALLEL_HINT = (
    "To call several functions, or one function several times, put every call in one "
    'JSON list: [{"name": ..., "arguments": ...}, ...].'
)


@dataclass(frozen=True)
class _CallSettings:
    parallel: bool = False  # a JSON array of calls instead of one call
    score: bool = False  # report the call's log-probability under the free model


class LocalChatModel(StreamFirstChatModel):
    """Base of the in-process backends; see the module docstring."""

    model: str = Field(description="catalog name or path of the model")
    tool_call_threshold: float = Field(
        0.002,
        ge=0.0,
        le=1.0,
        description="with tool_choice='auto', call a tool when the model gives at least this "
        "probability to opening a call (small models rarely make it their top choice)",
    )
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    max_tokens: int = Field(512, ge=1)
    seed: int | None = None
    stop: list[str] | None = Field(None, alias="stop_sequences")

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    # ---- engine hooks -------------------------------------------------------------

    @abstractmethod
    def _lock(self) -> threading.Lock: ...

    @abstractmethod
    def _n_ctx(self) -> int: ...

    @abstractmethod
    def _chat_template(self) -> tuple[str, str, str]:
        """(jinja template, bos token text, eos token text)."""

    @abstractmethod
    def _encode(self, text: str) -> list[int]:
        """Token ids of a rendered prompt (special tokens parsed, BOS as the model wants)."""

    @abstractmethod
    def _generate_tokens(
        self, prompt: list[int], sampling: Sampling, schema: dict[str, Any] | None
    ) -> Generator[int, None, None]:
        """Sampled tokens after ``prompt``; under ``schema`` when given. Caller holds the lock."""

    @abstractmethod
    def _piece(self, token: int) -> bytes: ...

    @abstractmethod
    def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...

    @abstractmethod
    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        """Text of ``tokens``; with ``special``, control tokens are written out too."""

    @abstractmethod
    def logits_unlocked(self, tokens: Sequence[int], first: int) -> npt.NDArray[np.float32]:
        """Next-token logits after each of ``tokens[first:]``, reusing cached prefixes.

        Shape (len(tokens) - first, vocab); the caller holds the model's lock.
        """

    @abstractmethod
    def _is_eog(self, token: int) -> bool: ...

    def eos_token(self) -> int:
        """The id of the token that ends the model's turn."""
        (token,) = self.tokenize(self._chat_template()[2], special=True)
        return token

    @property
    def _location(self) -> Literal["local"]:
        return "local"

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

    def bind_tools(
        self,
        tools: Sequence[ToolLike],
        *,
        tool_choice: ToolChoice = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        specs = to_openai_tools(tools)
        chosen_tool_names(specs, tool_choice)  # refuse a bad choice now, not at call time
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

    def _sampling(self, stop: list[str] | None, kwargs: dict[str, Any]) -> Sampling:
        return Sampling(
            temperature=float(kwargs.get("temperature", self.temperature)),
            top_p=float(kwargs.get("top_p", self.top_p)),
            top_k=int(kwargs.get("top_k", self.top_k)),
            max_tokens=int(kwargs.get("max_tokens") or self.max_tokens),
            seed=kwargs.get("seed", self.seed),
            stop=list(stop or self.stop or []),
        )

    # ---- prompt rendering ---------------------------------------------------------

    def _native_tools(self, tools: list[dict[str, Any]] | None) -> bool:
        """Whether the chat template renders tools itself (and expects tagged calls)."""
        return bool(tools) and "tools" in self._chat_template()[0]

    def _call_opening(self, tools: list[dict[str, Any]]) -> str:
        """What the model writes before the call's JSON."""
        return TOOL_OPEN + "\n" if self._native_tools(tools) else ""

    def render(
        self, messages: Sequence[BaseMessage], tools: list[dict[str, Any]] | None = None
    ) -> str:
        """The prompt text the model sees for ``messages`` (and ``tools``)."""
        template, bos, eos = self._chat_template()
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
        return len(self._encode(self.render(messages)))

    # ---- generation -----------------------------------------------------------------

    def _decode_text(
        self,
        prompt: list[int],
        sampling: Sampling,
        schema: dict[str, Any] | None,
        stats: RunStats,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Text pieces, honouring stop strings and max_tokens; fills ``stats``."""
        room = self._n_ctx() - len(prompt)
        if room < 1:
            raise ContextLengthError(
                f"the prompt has {len(prompt)} tokens; the context holds {self._n_ctx()}",
                hint="shorten the conversation, or load the model with a larger n_ctx",
            )
        budget = min(sampling.max_tokens, room)
        stats.prompt_tokens += len(prompt)
        stats.finish_reason = "length"
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        hold = max((len(s) for s in sampling.stop), default=1) - 1
        pending = ""
        produced = 0
        stats.tokens = []
        gen = self._generate_tokens(prompt, sampling, schema)
        try:
            for token in gen:
                if cancel is not None and cancel.is_set():
                    stats.finish_reason = "cancelled"
                    return
                if self._is_eog(token):
                    stats.finish_reason = "stop"
                    break
                produced += 1
                stats.output_tokens += 1
                stats.tokens.append(token)
                pending += decoder.decode(self._piece(token))
                cut = _first_stop(pending, sampling.stop)
                if cut is not None:
                    if pending[:cut]:
                        yield pending[:cut]
                    pending = ""
                    stats.finish_reason = "stop"
                    return
                if len(pending) > hold:
                    emit, pending = pending[: len(pending) - hold], pending[len(pending) - hold :]
                    yield emit
                if produced >= budget:
                    break
        finally:
            gen.close()
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._stream_cancellable(messages, stop, run_manager, None, **kwargs)

    def _stream_cancellable(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        cancel: threading.Event | None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if kwargs.get("model", self.model) != self.model:
            raise ConfigurationError(
                f"{self.model} is loaded in-process and cannot answer as {kwargs['model']!r}",
                hint=f"create another {type(self).__name__} for that model",
            )
        sampling = self._sampling(stop, kwargs)
        tools: list[dict[str, Any]] = kwargs.get("tools") or []
        names = chosen_tool_names(tools, kwargs.get("tool_choice")) if tools else []
        response_format = kwargs.get("response_format")
        schema = _schema_of(response_format)
        offer = tools if names is None or names else None  # tool_choice "none" hides them
        if schema is not None and schema is not JSON_OBJECT_SCHEMA:
            messages = with_system_hint(messages, schema_prompt(schema))
        calls = _CallSettings(
            parallel=bool(kwargs.get("parallel_tool_calls", False)),
            score=bool(kwargs.get("score_tool_calls", False)),
        )
        prompt_text = self.render(messages, offer)
        # Several calls come out as a JSON list, which the prompt asks for; the
        # decision whether to call at all is taken on the plain prompt.
        call_prompt = (
            self.render(with_system_hint(messages, PARALLEL_HINT), offer)
            if calls.parallel and offer
            else prompt_text
        )
        stats = RunStats()
        watch = Stopwatch()

        def emit(text: str) -> ChatGenerationChunk:
            watch.mark_first()
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            return chunk

        threshold = float(kwargs.get("tool_call_threshold", self.tool_call_threshold))
        with self._lock():
            prompt = self._encode(prompt_text)
            if names:  # a call is required: decode it under the grammar from the start
                call_text = self._forced_call(call_prompt, sampling, tools, names, stats, calls)
                yield self._tool_chunk(call_text, run_manager, watch)
            elif names is None and self._opens_call(prompt, tools, stats) >= threshold:
                call_text = self._forced_call(call_prompt, sampling, tools, None, stats, calls)
                yield self._tool_chunk(call_text, run_manager, watch)
            elif names is None:  # auto, and a call is unlikely: text, unless one opens anyway
                held = ""
                decided: bool | None = None
                for piece in self._decode_text(prompt, sampling, None, stats, cancel):
                    if decided is False:
                        yield emit(piece)
                        continue
                    held += piece
                    decided = opens_call(held)
                    if decided:
                        break
                    if decided is False:
                        yield emit(held)
                if decided:
                    stats.prompt_tokens -= len(prompt)  # the prefilled prompt is counted instead
                    call_text = self._forced_call(call_prompt, sampling, tools, None, stats, calls)
                    yield self._tool_chunk(call_text, run_manager, watch)
                elif decided is None and held:
                    yield emit(held)
            elif schema is not None:  # structured output: bounded, and room to finish
                budget = max(sampling.max_tokens, TOOL_CALL_MIN_TOKENS)
                room = Sampling(**{**sampling.__dict__, "max_tokens": budget})
                for piece in self._decode_text(prompt, room, bounded(schema), stats, cancel):
                    yield emit(piece)
            else:
                for piece in self._decode_text(prompt, sampling, None, stats, cancel):
                    yield emit(piece)
        watch.stop()
        yield self._final_chunk(stats, watch)

    def _forced_call(
        self,
        prompt_text: str,
        sampling: Sampling,
        tools: list[dict[str, Any]],
        names: list[str] | None,
        stats: RunStats,
        calls: _CallSettings,
    ) -> str:
        """JSON of one call to one of ``names`` (all tools if None), grammar-constrained.

        With ``calls.parallel`` it is a JSON array of one or more calls. With
        ``calls.score``, how likely the unconstrained model finds the call it
        was held to goes into ``stats.metadata`` (a confidence signal).

        Greedy decoding picks a tool token by token, which can favour a name
        whose first piece is likely over one that is likelier as a whole
        ("get_culture" over "get_monarchs"). A single greedy call therefore
        has its tool chosen over whole names, and is written again for the
        likeliest tool when it picked another.
        """
        offered = names or [t["function"]["name"] for t in tools]
        opening = self._call_opening(tools)
        # A call cut short is no call: give it room to close its (bounded) JSON.
        budget = max(sampling.max_tokens, TOOL_CALL_MIN_TOKENS)
        schema = tool_call_schema(tools, offered)
        if calls.parallel:
            schema = {"type": "array", "items": schema, "minItems": 1, "maxItems": MAX_PARALLEL}
            budget *= 2
            # Templates with native tools teach one tagged call per block, and small
            # models end their turn after the first; a fenced JSON list (what the
            # prompt asks for, see PARALLEL_HINT) is what they write for several.
            opening = "```json\n" if opening else opening
        prefilled = self._encode(prompt_text + opening)
        no_stop = Sampling(**{**sampling.__dict__, "stop": [], "max_tokens": budget})
        text = "".join(self._decode_text(prefilled, no_stop, schema, stats))
        stats.finish_reason = "tool_calls"
        greedy_one = not calls.parallel and sampling.temperature == 0
        choice = (
            self._name_logprobs(prefilled, text, offered) if greedy_one or calls.score else None
        )
        if choice and greedy_one:
            chosen, logprobs = choice
            best = max(logprobs, key=logprobs.__getitem__)
            if best != chosen:
                schema = tool_call_schema(tools, [best])
                text = "".join(self._decode_text(prefilled, no_stop, schema, stats))
                choice = best, logprobs
                stats.metadata["tool_rechosen"] = {"from": chosen, "to": best}
        if calls.score:
            self._score_call(prefilled, text, choice, stats)
        return text

    def _score_call(
        self,
        prefilled: list[int],
        text: str,
        choice: tuple[str, dict[str, float]] | None,
        stats: RunStats,
    ) -> None:
        """How likely the free model finds the call it was held to (a confidence signal).

        The call's text is scored as the model's tokenizer writes it. The grammar
        may have reached it through other tokens (``"}`` then ``}`` for ``"}}``),
        which the free model finds unlikely for reasons that have nothing to do
        with the call.
        """
        made = self.tokenize(text, special=False)
        if not made:
            return
        # The first token only says "a call starts" (tool_call_probability says
        # how likely that was); the rest says how sure the model is of the call.
        scores = self._continuation_logprobs_unlocked(prefilled, made)[1:]
        scores = scores if scores.size else np.zeros(1)
        stats.metadata["tool_call_logprob"] = {
            "mean": float(scores.mean()),
            "min": float(scores.min()),
            "tokens": len(made),
            "text": text,  # what was scored: the call's JSON as the model wrote it
            # the tool called, and every tool offered, as log p among the tools offered
            "name": choice[1][choice[0]] if choice else 0.0,
            "names": choice[1] if choice else {},
        }

    def _name_logprobs(
        self, prefilled: list[int], text: str, names: list[str]
    ) -> tuple[str, dict[str, float]] | None:
        """The tool the (first) call in ``text`` chose, and log p of each of ``names``.

        Each name is scored by the free model where the call wrote its own, and
        the scores are normalised over ``names``. None with fewer than two names.
        """
        found = NAME_VALUE.search(text)
        if found is None or len(names) < 2:
            return None
        chosen = text[found.end() :].split('"', 1)[0]
        if chosen not in names:
            return None
        head = text[: found.end()]
        tails = [self.tokenize(head + name + '"', special=False) for name in names]
        shared = 0  # tokens every tail starts with (each keeps at least one to score)
        while shared < min(map(len, tails)) - 1 and len({t[shared] for t in tails}) == 1:
            shared += 1
        scores = np.array(
            [
                self._continuation_logprobs_unlocked([*prefilled, *t[:shared]], t[shared:]).sum()
                for t in tails
            ],
            dtype=np.float64,
        )
        normalised = scores - np.logaddexp.reduce(scores)
        return chosen, {name: float(v) for name, v in zip(names, normalised, strict=True)}

    def _opens_call(self, prompt: list[int], tools: list[dict[str, Any]], stats: RunStats) -> float:
        """The probability the model gives to opening a tool call after ``prompt``."""
        opening = self.tokenize(self._call_opening(tools) + CALL_START)
        probability = float(np.exp(self._continuation_logprobs_unlocked(prompt, opening).sum()))
        stats.metadata["tool_call_probability"] = probability
        return probability

    # ---- token-level protocol (tokenize and detokenize come from the backend) -------

    def logits(self, tokens: Sequence[int], first: int) -> npt.NDArray[np.float32]:
        """``logits_unlocked`` under the model's lock."""
        with self._lock():
            return self.logits_unlocked(tokens, first)

    def continuation_logprobs(
        self, prompt: Sequence[int], continuation: Sequence[int]
    ) -> list[float]:
        if not prompt:
            raise ValueError("continuation_logprobs needs at least one prompt token")
        if not continuation:
            return []
        with self._lock():
            return [float(x) for x in self._continuation_logprobs_unlocked(prompt, continuation)]

    def _continuation_logprobs_unlocked(
        self, prompt: Sequence[int], continuation: Sequence[int]
    ) -> npt.NDArray[np.float64]:
        """``continuation_logprobs`` as an array; the caller holds the model's lock."""
        full = [*prompt, *continuation]
        logp = log_softmax(self.logits_unlocked(full[:-1], len(prompt) - 1))
        return logp[np.arange(len(continuation)), list(continuation)].astype(np.float64)

    def next_token_logprobs(self, prompt: Sequence[int], k: int) -> list[tuple[int, float]]:
        logp = log_softmax(self.logits(prompt, len(prompt) - 1))[0]
        top = np.argpartition(-logp, min(k, logp.size - 1))[:k]
        top = top[np.argsort(-logp[top])]
        return [(int(t), float(logp[t])) for t in top]

    def _tool_chunk(
        self, call_text: str, run_manager: CallbackManagerForLLMRun | None, watch: Stopwatch
    ) -> ChatGenerationChunk:
        try:
            parsed = json.loads(call_text, strict=False)
            found = (
                [parse_tool_call(json.dumps(c)) for c in parsed]
                if isinstance(parsed, list)
                else [parse_tool_call(call_text)]
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelOutputError(
                f"{self.model} produced a tool call that does not parse: {call_text!r}",
                hint="the call outgrew its token budget; give the tool fewer or "
                "shorter (maxLength) arguments",
            ) from exc
        watch.mark_first()
        msg = AIMessageChunk(
            content="",
            tool_call_chunks=[
                tool_call_chunk(
                    name=call["name"],
                    args=json.dumps(call["args"], ensure_ascii=False),
                    id=call["id"] or new_tool_call_id(),
                    index=i,
                )
                for i, call in enumerate(found)
            ],
        )
        chunk = ChatGenerationChunk(message=msg)
        if run_manager:
            run_manager.on_llm_new_token("", chunk=chunk)
        return chunk

    def _trace_extra(self) -> dict[str, Any]:
        """What a subclass adds to the trace of a call (speculative statistics, ...)."""
        return {}

    def _final_chunk(self, stats: RunStats, watch: Stopwatch) -> ChatGenerationChunk:
        call = ModelCall(
            model=self.model,
            location=self._location,
            input_tokens=stats.prompt_tokens,
            output_tokens=stats.output_tokens,
            latency_s=watch.elapsed,
            time_to_first_token_s=watch.ttft,
        )
        trace = Trace(calls=[call], extra=self._trace_extra())
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

    def _threaded_stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        cancel: threading.Event,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # Leaving the async loop early (a client that disconnects, a cancelled task)
        # stops generation at the next token.
        return self._stream_cancellable(messages, stop, None, cancel, **kwargs)


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _schema_of(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema an OpenAI-style ``response_format`` asks for, if any."""
    if response_format is None:
        return None
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_object":
            return JSON_OBJECT_SCHEMA
        if kind == "json_schema":
            inner = response_format.get("json_schema", {})
            schema = inner.get("schema", inner)
            return schema if isinstance(schema, dict) else JSON_OBJECT_SCHEMA
        if kind == "text":
            return None
        return response_format  # a bare JSON schema
    raise ModelOutputError(
        f"unsupported response_format {response_format!r}",
        hint='pass {"type": "json_schema", "json_schema": {"schema": ...}} or a JSON schema dict',
    )


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


def log_softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    out: npt.NDArray[np.float32] = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return out
