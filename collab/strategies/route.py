"""Route: decide before generating whether the SLM or the LLM answers.

A scorer gives each request a difficulty in [0, 1]; at or above the threshold
the LLM answers. ``calibrate`` sets the threshold for a target share of LLM calls.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage

from collab.errors import ConfigurationError
from collab.messages import question_text
from collab.models.base import ChatTokenModel
from collab.strategies.base import Strategy, relay
from collab.strategies.signals import yes_probability
from collab.trace import ModelCall, Trace, stopwatch


class Scorer(Protocol):
    name: str

    def difficulty(self, messages: Sequence[BaseMessage]) -> float:
        """In [0, 1]: how likely the SLM is to get this wrong."""
        ...


CAN_ANSWER = (
    "{question}\n\n---\nBefore answering: can you answer the request above correctly and "
    "completely on your own? Reply with Yes or No only."
)


@dataclass
class SelfAssessment:
    """The SLM's own judgement: 1 - P(yes) to 'can you answer this correctly?'."""

    model: ChatTokenModel
    name: str = "self_assessment"

    def difficulty(self, messages: Sequence[BaseMessage]) -> float:
        prompt = CAN_ANSWER.format(question=question_text(messages))
        return 1.0 - yes_probability(self.model, prompt)


_WORD = re.compile(r"[a-z_]+|\d+|[^\sa-z\d]")


@dataclass
class TrainedScorer:
    """Logistic regression on hashed words and length, trained from labelled examples.

    ``fit(texts, needs_llm)``: each label says whether the SLM failed on that text.
    """

    dims: int = 2048
    epochs: int = 300
    l2: float = 1e-3
    name: str = "trained"
    weights: npt.NDArray[np.float64] | None = field(default=None, repr=False)

    def features(self, text: str) -> npt.NDArray[np.float64]:
        x = np.zeros(self.dims + 2)
        words = _WORD.findall(text.lower())
        for a, b in zip(words, [*words[1:], ""], strict=True):
            for gram in (a, f"{a} {b}"):
                x[zlib.crc32(gram.encode()) % self.dims] += 1.0
        norm = np.linalg.norm(x)
        x = x / norm if norm else x
        x[self.dims] = np.log1p(len(words)) / 10
        x[self.dims + 1] = 1.0  # bias
        return x

    def fit(self, texts: Sequence[str], needs_llm: Sequence[bool]) -> TrainedScorer:
        if len(texts) != len(needs_llm) or len(set(needs_llm)) < 2:
            raise ConfigurationError(
                "a trained scorer needs as many labels as texts, and examples of both kinds",
                hint="label some texts the SLM gets right (False) and some it gets wrong (True)",
            )
        x = np.stack([self.features(t) for t in texts])
        y = np.asarray(needs_llm, dtype=np.float64)
        w = np.zeros(x.shape[1])
        lr = 1.0
        for _ in range(self.epochs):  # full-batch gradient descent: the data are small
            p = 1 / (1 + np.exp(-(x @ w)))
            w -= lr * (x.T @ (p - y) / len(y) + self.l2 * w)
        self.weights = w
        return self

    def difficulty(self, messages: Sequence[BaseMessage]) -> float:
        if self.weights is None:
            raise ConfigurationError(
                "this TrainedScorer has not been fitted", hint="call fit(texts, needs_llm) first"
            )
        z = float(self.features(question_text(messages)) @ self.weights)
        return float(1 / (1 + np.exp(-z)))


class Route(Strategy):
    name = "route"

    def __init__(
        self, slm: BaseChatModel, llm: BaseChatModel, scorer: Scorer, threshold: float = 0.5
    ) -> None:
        self.slm, self.llm, self.scorer, self.threshold = slm, llm, scorer, threshold

    def calibrate(self, examples: Sequence[Sequence[BaseMessage]], llm_share: float) -> float:
        """Set the threshold so that about ``llm_share`` of requests like these go to the LLM."""
        if not 0 <= llm_share <= 1 or not examples:
            raise ConfigurationError(
                f"llm_share={llm_share} over {len(examples)} examples",
                hint="give a share between 0 and 1 and at least one example",
            )
        scores = np.array([self.scorer.difficulty(m) for m in examples])
        self.threshold = float(np.quantile(scores, 1 - llm_share)) if llm_share < 1 else 0.0
        if llm_share == 0:
            self.threshold = float(np.nextafter(scores.max(), np.inf))
        return self.threshold

    def decide(self, messages: Sequence[BaseMessage]) -> tuple[bool, Trace]:
        """Whether the LLM answers ``messages``; the trace holds the score and the reason."""
        with stopwatch() as watch:
            score = self.scorer.difficulty(messages)
        hard = score >= self.threshold
        trace = Trace(
            strategy=self.name,
            reason=f"{self.scorer.name} difficulty {score:.2f} "
            f"{'>=' if hard else '<'} {self.threshold:.2f}: {'LLM' if hard else 'SLM'} answers",
            extra={"difficulty": round(score, 4)},
        )
        scoring_model = getattr(self.scorer, "model", None)
        if scoring_model is not None:
            name = str(getattr(scoring_model, "model", "slm"))
            trace.add(
                ModelCall(model=name, location="local", latency_s=watch.elapsed, role="router")
            )
        return hard, trace

    def stream(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Iterator[AIMessageChunk]:
        hard, trace = self.decide(messages)
        target, role = (self.llm, "llm") if hard else (self.slm, "slm")
        return relay(target, messages, role, trace, **kwargs)
