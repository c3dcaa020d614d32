"""Strategies by name: what a policy may pick, and how each is built over a pair of models.

``register_strategy(name, factory)`` adds one; the policy accepts its name and
``CollabChatModel`` builds it per request with ``factory(pair)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel

from collab.errors import ConfigurationError
from collab.models.profile import require
from collab.strategies.base import Strategy
from collab.strategies.baselines import LLMOnly, SLMOnly
from collab.strategies.cascade import Cascade
from collab.strategies.draft_verify import DraftVerify
from collab.strategies.route import Route, Scorer, SelfAssessment
from collab.strategies.signals import (
    SelfVerification,
    Signal,
    TaskCheck,
    TokenLogprob,
    code_passes_examples,
)
from collab.strategies.speculative import Speculative
from collab.strategies.verify_draft import VerifyDraft, reader


@dataclass
class Pair:
    """What a strategy is built from: the two models and the policy's settings for it."""

    slm: BaseChatModel
    llm: BaseChatModel  # as this request may use it (behind the privacy gate when remote)
    route_threshold: float = 0.5
    cascade_signal: str = "logprob_mean"
    cascade_threshold: float = 0.5
    scorer: Scorer | None = None  # route's; None: the SLM's self-assessment
    signal: Signal | None = None  # the cascade's; None: ``cascade_signal``
    speculative: BaseChatModel | None = None

    def route_scorer(self) -> Scorer:
        if self.scorer is not None:
            return self.scorer
        return SelfAssessment(require(self.slm, "routing by self-assessment"))

    def cascade_confidence(self) -> Signal:
        if self.signal is not None:
            return self.signal
        kind = self.cascade_signal
        if kind == "code_examples":
            return TaskCheck(code_passes_examples, name="code_examples")
        slm = require(self.slm, f"the cascade signal {kind!r}")
        if kind == "self_verification":
            return SelfVerification(slm)
        reduce: Literal["mean", "min"] = "min" if kind.endswith("_min") else "mean"
        if kind.startswith("llm_"):
            return TokenLogprob(slm, reduce, reader=reader(self.llm))
        return TokenLogprob(slm, reduce)


Factory = Callable[[Pair], Strategy]


@dataclass(frozen=True)
class Registered:
    factory: Factory
    uses_llm: bool


def _speculative(pair: Pair) -> Strategy:
    if pair.speculative is None:
        raise ConfigurationError(
            "the policy picked 'speculative' but this CollabChatModel has no speculative model",
            hint="pass speculative=SpeculativeChatModel(...) or change the policy",
        )
    return Speculative(pair.speculative)


_STRATEGIES: dict[str, Registered] = {
    "slm_only": Registered(lambda p: SLMOnly(p.slm), uses_llm=False),
    "llm_only": Registered(lambda p: LLMOnly(p.llm), uses_llm=True),
    "route": Registered(lambda p: Route(p.slm, p.llm, p.route_scorer(), p.route_threshold), True),
    "cascade": Registered(
        lambda p: Cascade(p.slm, p.llm, p.cascade_confidence(), p.cascade_threshold), True
    ),
    "draft_verify": Registered(lambda p: DraftVerify(p.slm, p.llm), uses_llm=True),
    "speculative": Registered(_speculative, uses_llm=True),
    "verify_draft": Registered(lambda p: VerifyDraft(p.slm, p.llm), uses_llm=True),
}


def register_strategy(name: str, factory: Factory, *, uses_llm: bool = True) -> None:
    """Make ``name`` a strategy a policy can pick; ``factory(pair)`` builds it per request.

    ``uses_llm``: whether it may call the LLM (budgets, privacy and the LLM-down
    fallback apply). Registering a name again replaces it.
    """
    if not name.isidentifier():
        raise ConfigurationError(f"strategy name {name!r}", hint="use a Python identifier")
    _STRATEGIES[name] = Registered(factory, uses_llm)


def strategy_names() -> list[str]:
    return sorted(_STRATEGIES)


def uses_llm(name: str) -> bool:
    return _known(name).uses_llm


def build(name: str, pair: Pair) -> Strategy:
    """The strategy called ``name`` over ``pair``."""
    return _known(name).factory(pair)


def _known(name: str) -> Registered:
    if name not in _STRATEGIES:
        raise ConfigurationError(
            f"unknown strategy {name!r}",
            hint=f"use one of {', '.join(strategy_names())}, or register_strategy() your own",
        )
    return _STRATEGIES[name]


def check_name(name: Any) -> str:
    """``name`` if it is a registered strategy (for the policy's validators)."""
    if not isinstance(name, str) or name not in _STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(strategy_names())}")
    return name
