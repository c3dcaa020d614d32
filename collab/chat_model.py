"""``CollabChatModel``: the SLM and the LLM as one LangChain chat model, steered by a policy.

Each call asks the policy for a strategy, runs it and returns its answer; the
decision, the reason and the trace (which model produced what, tokens, cost,
latency, what was sent to the remote model) ride in ``response_metadata["collab"]``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field, PrivateAttr

from collab.config import load_settings
from collab.errors import ConfigurationError, ModelUnavailableError, PolicyError
from collab.models.base import StreamFirstChatModel, text_content, to_openai_tools
from collab.models.local import LocalChatModel
from collab.policy import USES_LLM, Decision, Ledger, Policy, Request, classify
from collab.strategies.base import Strategy, is_local
from collab.strategies.baselines import LLMOnly, SLMOnly
from collab.strategies.cascade import Cascade
from collab.strategies.draft_verify import DraftVerify
from collab.strategies.privacy import Redactor, RemoteGate, find_sensitive
from collab.strategies.route import Route, Scorer, SelfAssessment
from collab.strategies.signals import (
    SelfVerification,
    Signal,
    TaskCheck,
    TokenLogprob,
    code_passes_examples,
)
from collab.strategies.speculative import Speculative
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
    _llm_latency_s: float | None = PrivateAttr(None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "collab"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"slm": getattr(self.slm, "model", None), "llm": getattr(self.llm, "model", None)}

    def bind_tools(
        self, tools: Sequence[dict[str, Any] | type | Any | BaseTool], **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        return self.bind(tools=to_openai_tools(tools), **kwargs)

    # ---- the decision ------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            path = self.policy.ledger or load_settings().cache_dir / "spend.sqlite"
            self._ledger = Ledger(path)
        return self._ledger

    def request(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Request:
        """The facts the policy decides on."""
        text = "\n".join(text_content(m.content) for m in messages)
        sensitive = tuple(sorted({f.kind for f in find_sensitive(text, self.policy.names)}))
        if isinstance(self.slm, LocalChatModel):
            prompt_tokens = self.slm.count_prompt_tokens(messages)
        else:
            prompt_tokens = len(text) // 4
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
        return self.policy.decide(
            request,
            spent_today_usd=self.ledger.spent_today() if needs_ledger else 0.0,
            llm_cost_usd=self._llm_cost(request),
            llm_latency_s=self._llm_latency_s,
        )

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

    def _signal(self) -> Signal:
        if self.signal is not None:
            return self.signal  # type: ignore[no-any-return]
        kind = self.policy.cascade.signal
        if kind == "code_examples":
            return TaskCheck(code_passes_examples, name="code_examples")
        slm = self._local_slm(f"the cascade signal {kind!r}")
        if kind == "self_verification":
            return SelfVerification(slm)
        return TokenLogprob(slm, "min" if kind == "logprob_min" else "mean")

    def _scorer(self) -> Scorer:
        if self.scorer is not None:
            return self.scorer  # type: ignore[no-any-return]
        return SelfAssessment(self._local_slm("routing by self-assessment"))

    def _local_slm(self, purpose: str) -> LocalChatModel:
        if not isinstance(self.slm, LocalChatModel):
            raise ConfigurationError(
                f"{purpose} needs a local SLM with token log-probabilities",
                hint="use a collab local model as the SLM, or pass scorer= / signal=",
            )
        return self.slm

    def strategy(self, name: str, llm: BaseChatModel | None = None) -> Strategy:
        """The strategy called ``name`` over this pair (``llm`` replaces the LLM, e.g. gated)."""
        llm = llm or self.llm
        if name == "slm_only":
            return SLMOnly(self.slm)
        if name == "llm_only":
            return LLMOnly(llm)
        if name == "route":
            return Route(self.slm, llm, self._scorer(), self.policy.route.threshold)
        if name == "cascade":
            return Cascade(self.slm, llm, self._signal(), self.policy.cascade.threshold)
        if name == "draft_verify":
            return DraftVerify(self.slm, llm)
        if name == "speculative":
            if self.speculative is None:
                raise ConfigurationError(
                    "the policy picked 'speculative' but this CollabChatModel has no "
                    "speculative model",
                    hint="pass speculative=SpeculativeChatModel(...) or change the policy",
                )
            return Speculative(self.speculative)
        raise ConfigurationError(f"unknown strategy {name!r}")

    def remote_for(self, decision: Decision) -> BaseChatModel:
        """The LLM as ``decision`` may use it: a remote one behind a gate that redacts
        what the decision says to, and audits what leaves the machine."""
        if is_local(self.llm):
            return self.llm
        redactor = Redactor(names=self.policy.names, enabled=decision.privacy == "redact")
        return RemoteGate(inner=self.llm, redactor=redactor)

    # ---- running -------------------------------------------------------------------------

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        decision = self.admit(messages, **kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("request_tags", "task")}
        strategy = self.strategy(decision.strategy, self.remote_for(decision))
        emitted = False
        try:
            for chunk in self._decorated(strategy.stream(messages, stop=stop, **kwargs), decision):
                emitted = emitted or bool(chunk.content or chunk.tool_call_chunks)
                if run_manager and isinstance(chunk.content, str) and chunk.content:
                    run_manager.on_llm_new_token(chunk.content)
                yield ChatGenerationChunk(message=chunk)
        except ModelUnavailableError as exc:
            if emitted or self.policy.on_llm_down == "fail" or decision.strategy not in USES_LLM:
                raise
            fallback = decision.model_copy(update={
                "strategy": "slm_only",
                "reason": f"{decision.reason}; the LLM is unavailable ({exc.message}): "
                "the SLM answered instead",
            })  # fmt: skip
            source = SLMOnly(self.slm).stream(messages, stop=stop, **kwargs)
            for chunk in self._decorated(source, fallback, llm_down=True):
                yield ChatGenerationChunk(message=chunk)

    def _decorated(
        self, chunks: Iterator[AIMessageChunk], decision: Decision, llm_down: bool = False
    ) -> Iterator[AIMessageChunk]:
        """The strategy's chunks, the last one's trace completed with the policy's decision."""
        for chunk in chunks:
            meta = chunk.response_metadata or {}
            if TRACE_KEY not in meta:
                yield chunk
                continue
            trace = Trace.from_metadata(meta)
            own = trace.reason
            trace.reason = f"{decision.reason} -> {own}" if own else decision.reason
            trace.extra["policy"] = decision.model_dump()
            if llm_down:
                trace.extra["llm_down"] = True
                trace.escalations.append("LLM unavailable: answered by the SLM")
            self._account(trace)
            yield chunk.model_copy(
                update={"response_metadata": {**meta, TRACE_KEY: trace.to_metadata()}}
            )

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
