"""``CollabChatModel``: the SLM and the LLM as one LangChain chat model, steered by a policy.

Each call asks the policy for a strategy, runs it and returns its answer; the
decision, the reason and the trace (which model produced what, tokens, cost,
latency, what was sent to the remote model) ride in ``response_metadata["collab"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from threading import Event
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict, Field, PrivateAttr

from collab.config import load_settings
from collab.errors import ModelUnavailableError, PolicyError
from collab.messages import answered_calls, call_key, text_content
from collab.models import wire
from collab.models.base import Chunks, Options, Stop, StreamFirstChatModel, iterate_in_thread
from collab.models.profile import location_of
from collab.models.tool_format import opens_call
from collab.options import check_options
from collab.policy import Decision, Ledger, Policy, Request, classify
from collab.privacy import Detector, RemoteGate, Vault
from collab.strategies.base import Strategy, answer_chunks, gather
from collab.strategies.cascade import Cascade
from collab.strategies.draft_verify import DraftVerify
from collab.strategies.fallback import llm_down
from collab.strategies.registry import Pair, build, uses_llm
from collab.strategies.route import Route
from collab.trace import TRACE_KEY, Trace


class CollabChatModel(StreamFirstChatModel):
    """A local SLM and a remote LLM behind one chat model; the policy picks how they share.

    Per call, optional keyword arguments: ``request_tags`` (matched by policy
    rules) and ``task`` (overrides the detected task kind).
    """

    slm: BaseChatModel
    llm: BaseChatModel
    policy: Policy = Field(default_factory=Policy)
    speculative: BaseChatModel | None = Field(
        None, description="the model the 'speculative' strategy runs (a SpeculativeChatModel)"
    )
    scorer: Any = Field(None, description="route's Scorer; default: the SLM's self-assessment")
    signal: Any = Field(None, description="cascade's Signal; default: from the policy")
    model: str = "collab"

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _ledger: Ledger | None = PrivateAttr(None)
    _detector: Detector | None = PrivateAttr(None)
    _llm_latency_s: float | None = PrivateAttr(None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "collab"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"slm": getattr(self.slm, "model", None), "llm": getattr(self.llm, "model", None)}

    # ---- the decision ------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            path = self.policy.ledger or load_settings().cache_dir / "spend.sqlite"
            self._ledger = Ledger(path)
        return self._ledger

    @property
    def detector(self) -> Detector:
        """What finds the sensitive values the policy names (built once)."""
        if self._detector is None:
            self._detector = Detector(self.policy.sensitive, self.policy.names)
        return self._detector

    def request(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Request:
        """The facts the policy decides on."""
        text = "\n".join(text_content(m.content) for m in messages)
        vault = Vault(self.detector)
        vault.learn_messages(messages)
        for schema in (kwargs.get("tools"), kwargs.get("response_format")):
            vault.learn_schema(schema)
        sensitive = tuple(sorted(vault.kinds))
        count = getattr(self.slm, "count_prompt_tokens", None)
        prompt_tokens = int(count(messages)) if callable(count) else len(text) // 4
        return Request(
            task=kwargs.get("task") or classify(messages, bool(kwargs.get("tools"))),
            tags=frozenset(kwargs.get("request_tags") or ()),
            sensitive=sensitive,
            prompt_tokens=prompt_tokens,
            max_tokens=int(kwargs.get("max_tokens") or getattr(self.llm, "max_tokens", 0) or 512),
        )

    def _llm_cost(self, request: Request) -> float:
        price = getattr(self.llm, "price", None)
        if price is None:
            price = load_settings().price_of(str(getattr(self.llm, "model", "")), remote=True)
        return float(price.cost(request.prompt_tokens, request.max_tokens))

    def decide(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Decision:
        """What the policy would do with ``messages``, without running it."""
        request = self.request(messages, **kwargs)
        needs_ledger = self.policy.budget.daily_usd is not None
        decision = self.policy.decide(
            request,
            spent_today_usd=self.ledger.spent_today() if needs_ledger else 0.0,
            llm_cost_usd=self._llm_cost(request),
            llm_latency_s=self._llm_latency_s,
        )
        # Token-level strategies hand the text to a remote reader as it is.
        reads_remotely = {
            "speculative": self.speculative is not None
            and location_of(self.speculative) == "remote",
            "verify_draft": location_of(self.llm) == "remote",
        }
        if decision.privacy == "redact" and reads_remotely.get(decision.strategy, False):
            return decision.model_copy(update={
                "strategy": "llm_only",
                "reason": f"{decision.reason}; {decision.strategy} would send the text to its "
                "remote reader unredacted: the LLM answers through the privacy gate",
            })  # fmt: skip
        return decision

    def admit(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Decision:
        """The policy's decision for ``messages``; a PolicyError when it refuses them."""
        decision = self.decide(messages, **kwargs)
        if decision.privacy == "refuse":
            raise PolicyError(
                f"request refused: {decision.reason}",
                hint="remove the personal data, or set the policy's privacy to 'local' or 'redact'",
            )
        return decision

    # ---- the strategies ------------------------------------------------------------------

    def pair(self, llm: BaseChatModel | None = None) -> Pair:
        """The models and settings strategies are built from (``llm`` replaces the LLM)."""
        policy = self.policy
        return Pair(
            slm=self.slm, llm=llm or self.llm, route_threshold=policy.route.threshold,
            cascade_signal=policy.cascade.signal, cascade_threshold=policy.cascade.threshold,
            scorer=self.scorer, signal=self.signal, speculative=self.speculative,
        )  # fmt: skip

    def strategy(self, name: str, llm: BaseChatModel | None = None) -> Strategy:
        """The strategy called ``name`` over this pair (``llm`` replaces the LLM, e.g. gated)."""
        return build(name, self.pair(llm))

    def route(self) -> Route:
        pair = self.pair()
        return Route(pair.slm, pair.llm, pair.route_scorer(), pair.route_threshold)

    def cascade(self) -> Cascade:
        pair = self.pair()
        return Cascade(pair.slm, pair.llm, pair.cascade_confidence(), pair.cascade_threshold)

    def draft_verify(self, decision: Decision) -> DraftVerify:
        return DraftVerify(self.slm, self.remote_for(decision))

    def remote_for(self, decision: Decision) -> BaseChatModel:
        """The LLM as ``decision`` may use it: a remote one behind a gate that redacts
        what the decision says to."""
        if location_of(self.llm) == "local":
            return self.llm
        return RemoteGate(
            inner=self.llm, detector=self.detector, enabled=decision.privacy == "redact"
        )

    # ---- running -------------------------------------------------------------------------

    def _run(
        self, messages: list[BaseMessage], stop: Stop, options: Options, cancel: Event
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._answer(messages, stop, options, whole=False):
            if cancel.is_set():
                return
            yield ChatGenerationChunk(message=chunk)

    def _whole(self, messages: list[BaseMessage], stop: Stop, options: Options) -> Chunks:
        for chunk in self._answer(messages, stop, options, whole=True):
            yield ChatGenerationChunk(message=chunk)

    async def _arun(
        self, messages: list[BaseMessage], stop: Stop, options: Options
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in self._async_answer(messages, stop, options, whole=False):
            yield chunk

    def _awhole(
        self, messages: list[BaseMessage], stop: Stop, options: Options
    ) -> AsyncIterator[ChatGenerationChunk]:
        return self._async_answer(messages, stop, options, whole=True)

    async def _async_answer(
        self, messages: list[BaseMessage], stop: Stop, options: Options, *, whole: bool
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Native async. The policy decides in a worker thread (finding personal data is
        CPU work); ``slm_only`` and ``llm_only`` then run on the models' own async paths: the
        LLM's HTTP holds no thread, the SLM waits its turn in its queue without one. Other
        strategies interleave both models step by step: they run in a worker thread that
        holds the SLM's turn throughout."""
        check_options(options, type(self).__name__)
        decision = await asyncio.to_thread(self.admit, messages, **options)
        kwargs = {k: v for k, v in options.items() if k not in ("request_tags", "task")}
        repeats = bool(kwargs.get("tools")) and bool(answered_calls(messages))
        if decision.strategy not in ("slm_only", "llm_only") or repeats:
            queue = getattr(self.slm, "queue", None)
            async with queue.slot() if queue is not None else contextlib.nullcontext():
                given, cancel = {**options, "_decision": decision}, Event()
                run = (
                    self._whole(messages, stop, given)
                    if whole
                    else self._run(messages, stop, given, cancel)
                )
                async for chunk in iterate_in_thread(run, cancel):
                    yield chunk
            return
        with wire.recording() as sent:
            async for piece in self._aanswer(messages, decision, whole=whole, stop=stop, **kwargs):
                yield ChatGenerationChunk(message=_audited(piece, sent))

    async def _aanswer(
        self, messages: Sequence[BaseMessage], decision: Decision, *, whole: bool, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        """``answer`` for the one-model strategies, on their async paths."""
        strategy = self.strategy(decision.strategy, self.remote_for(decision))
        emitted = False
        try:
            chunks = strategy.astream(messages, **kwargs)
            if whole:  # nothing is shown before the end: an LLM that dies part way is replaced
                chunks = _replayed([c async for c in chunks])
            async for chunk in chunks:
                emitted = emitted or bool(chunk.content or chunk.tool_call_chunks)
                yield await self._aclosed(chunk, decision)
        except ModelUnavailableError as exc:
            if (emitted and not whole) or not uses_llm(decision.strategy):
                raise
            fallback, down = self._without_llm(decision, exc)
            async for chunk in self.strategy("slm_only").astream(messages, **kwargs):
                yield await self._aclosed(chunk, fallback, down)

    def _answer(
        self, messages: list[BaseMessage], stop: Stop, options: Options, *, whole: bool
    ) -> Iterator[AIMessageChunk]:
        """The answer; its trace's ``extra["remote_audit"]`` holds every request that left
        the machine meanwhile (retries and failed attempts too), byte for byte."""
        options = dict(options)
        decided: Decision | None = options.pop("_decision", None)  # by the async path
        check_options(options, type(self).__name__)
        with wire.recording() as sent:
            decision = decided or self.admit(messages, **options)
            kwargs = {k: v for k, v in options.items() if k not in ("request_tags", "task")}
            answered = answered_calls(messages) if kwargs.get("tools") else set()
            if answered:
                chunks = self._without_repeats(messages, decision, answered, stop=stop, **kwargs)
            else:
                chunks = self.answer(messages, decision, whole=whole, stop=stop, **kwargs)
            for chunk in chunks:
                yield _audited(chunk, sent)

    def _without_repeats(
        self, messages: list[BaseMessage], decision: Decision, answered: set[str], **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        """The answer, unless it calls again what this turn already has the results of:
        then the policy's strategy answers from the results (no tool may be called), and
        the LLM when a call is written as text anyway. A tool loop ends instead of
        repeating itself."""
        first = gather(self.answer(messages, decision, whole=True, **kwargs))
        if not first.tool_calls or any(call_key(c) not in answered for c in first.tool_calls):
            yield from answer_chunks(first, Trace.from_metadata(first.response_metadata))
            return
        repeated = ", ".join(sorted({c["name"] for c in first.tool_calls}))
        spent = Trace.from_metadata(first.response_metadata)
        quiet = {**kwargs, "tool_choice": "none"}
        # the policy's strategy answers with no tool allowed (a cascade judges the SLM's
        # answer as any other), then the LLM if a call was written as text anyway
        for name in (decision.strategy, "llm_only"):
            step = decision.model_copy(update={
                "strategy": name,
                "reason": f"{decision.reason}; {repeated} was called again with its result "
                f"already here: {name} answers from the result",
            })  # fmt: skip
            reply = gather(self.answer(messages, step, whole=True, **quiet))
            if not opens_call(text_content(reply.content)):
                break
        trace = Trace.from_metadata(reply.response_metadata).merge(spent)
        trace.escalations.append(f"repeated call to {repeated}: answered from its result")
        yield from answer_chunks(reply.model_copy(update={"tool_calls": []}), trace)

    def answer(
        self,
        messages: Sequence[BaseMessage],
        decision: Decision,
        *,
        whole: bool = False,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """``decision``'s strategy run on ``messages``, the trace completed with the decision.

        When the LLM cannot be reached before anything was shown, the SLM answers,
        flagged (unless the policy says ``on_llm_down = "fail"``). With ``whole``
        (the answer is wanted whole, as by ``invoke``) nothing is shown before the
        end, so an LLM that dies part way is replaced too.
        """
        strategy = self.strategy(decision.strategy, self.remote_for(decision))
        emitted = False
        try:
            chunks = (self._closed(c, decision) for c in strategy.stream(messages, **kwargs))
            for chunk in list(chunks) if whole else chunks:
                emitted = emitted or bool(chunk.content or chunk.tool_call_chunks)
                yield chunk
        except ModelUnavailableError as exc:
            if (emitted and not whole) or not uses_llm(decision.strategy):
                raise
            fallback, down = self._without_llm(decision, exc)
            for chunk in self.strategy("slm_only").stream(messages, **kwargs):
                yield self._closed(chunk, fallback, down)

    def _without_llm(
        self, decision: Decision, exc: ModelUnavailableError
    ) -> tuple[Decision, Trace]:
        """The decision and trace of the SLM answering for an LLM that cannot be reached
        (raises when the policy says ``on_llm_down = "fail"``)."""
        down = llm_down(exc, self.policy.on_llm_down, "the SLM answered instead")
        fallback = decision.model_copy(update={
            "strategy": "slm_only",
            "reason": f"{decision.reason}; the LLM is unavailable ({exc.message}): "
            "the SLM answered instead",
        })  # fmt: skip
        return fallback, down

    def _closed(
        self, chunk: AIMessageChunk, decision: Decision, down: Trace | None = None
    ) -> AIMessageChunk:
        """``chunk``; the final one's trace completed with the policy's decision."""
        meta = chunk.response_metadata or {}
        if TRACE_KEY not in meta:
            return chunk
        trace = Trace.from_metadata(meta)
        own = trace.reason
        trace.reason = f"{decision.reason} -> {own}" if own else decision.reason
        trace.extra["policy"] = decision.model_dump()
        if down is not None:
            trace = trace.merge(down)
        self._account(trace)
        return chunk.model_copy(
            update={"response_metadata": {**meta, TRACE_KEY: trace.to_metadata()}}
        )

    async def _aclosed(
        self, chunk: AIMessageChunk, decision: Decision, down: Trace | None = None
    ) -> AIMessageChunk:
        """``_closed`` off the event loop for the final chunk, which writes the spend ledger
        (a file or a database)."""
        if TRACE_KEY not in (chunk.response_metadata or {}):
            return chunk
        return await asyncio.to_thread(self._closed, chunk, decision, down)

    def _account(self, trace: Trace) -> None:
        remote = [c for c in trace.calls if c.location == "remote"]
        spent = sum(c.cost_usd for c in remote)
        if spent and self.policy.budget.daily_usd is not None:
            self.ledger.add(spent)
        latency = max((c.latency_s for c in remote), default=0.0)
        if latency:
            with self._lock:
                old = self._llm_latency_s
                self._llm_latency_s = latency if old is None else 0.7 * old + 0.3 * latency


def _audited(chunk: AIMessageChunk, sent: list[wire.SentRequest]) -> AIMessageChunk:
    """``chunk``; the final one's trace holding every request that left the machine."""
    meta = chunk.response_metadata or {}
    if TRACE_KEY not in meta:
        return chunk
    trace = Trace.from_metadata(meta)
    trace.extra["remote_audit"] = [r.as_dict() for r in sent]
    return chunk.model_copy(update={"response_metadata": {**meta, TRACE_KEY: trace.to_metadata()}})


async def _replayed(chunks: list[AIMessageChunk]) -> AsyncIterator[AIMessageChunk]:
    for chunk in chunks:
        yield chunk
