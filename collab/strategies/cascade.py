"""Cascade: the SLM answers; a confidence signal decides whether the LLM answers instead.

``pick_threshold`` finds the threshold that reaches a quality target at the
least escalation, from records of past answers (confidence, SLM and LLM right).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage

from collab.errors import ConfigurationError
from collab.messages import answered_calls, call_key
from collab.strategies.base import Strategy, answer_chunks, ask, relay
from collab.strategies.signals import Signal
from collab.trace import Trace, stopwatch


@dataclass
class Record:
    """One labelled example: the signal's confidence, and whether each model got it right."""

    confidence: float
    slm_correct: bool
    llm_correct: bool


@dataclass
class Operating:
    threshold: float
    quality: float  # share answered correctly
    llm_share: float  # share escalated


def operating_points(records: Sequence[Record]) -> list[Operating]:
    """Quality and escalation share at every threshold that changes the outcome."""
    conf = np.array([r.confidence for r in records])
    slm = np.array([r.slm_correct for r in records])
    llm = np.array([r.llm_correct for r in records])
    points = []
    for t in [*np.unique(conf), np.inf]:
        escalate = conf < t
        quality = float(np.where(escalate, llm, slm).mean())
        points.append(Operating(float(t), quality, float(escalate.mean())))
    return points


def pick_threshold(records: Sequence[Record], quality: float) -> Operating:
    """The least escalation that reaches ``quality``; else the best quality reachable."""
    if not records:
        raise ConfigurationError("no records to calibrate on", hint="pass labelled examples")
    points = operating_points(records)
    good = [p for p in points if p.quality >= quality]
    if good:
        return min(good, key=lambda p: (p.llm_share, -p.quality))
    return max(points, key=lambda p: (p.quality, -p.llm_share))


class Cascade(Strategy):
    name = "cascade"

    def __init__(
        self, slm: BaseChatModel, llm: BaseChatModel, signal: Signal, threshold: float = 0.5
    ) -> None:
        self.slm, self.llm, self.signal, self.threshold = slm, llm, signal, threshold

    def judge(self, messages: Sequence[BaseMessage], answer: AIMessage, trace: Trace) -> bool:
        """Whether ``answer`` must go to the LLM; ``trace`` gets the confidence and the reason."""
        with stopwatch() as watch:
            confidence = self.signal.confidence(messages, answer)
        trace.extra[f"confidence_{self.signal.name}"] = round(confidence, 4)
        trace.extra["signal_s"] = round(watch.elapsed, 3)
        trace.strategy = self.name
        verdict = f"{self.signal.name} confidence {confidence:.2f}"
        if confidence >= self.threshold:
            trace.reason = f"{verdict} >= {self.threshold:.2f}: SLM answer kept"
            return False
        trace.reason = f"{verdict} < {self.threshold:.2f}: escalated to the LLM"
        trace.escalations.append(verdict)
        return True

    def calibrate(self, records: Sequence[Record], quality: float) -> Operating:
        """Set the threshold that reaches ``quality`` at least cost on ``records``."""
        point = pick_threshold(records, quality)
        self.threshold = point.threshold
        return point

    def stream(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Iterator[AIMessageChunk]:
        # a tool call is judged by how likely the SLM finds it (``tool_call_logprob``)
        scored = {"score_tool_calls": True} if kwargs.get("tools") else {}
        answer, trace = ask(self.slm, messages, "slm", **{**kwargs, **scored})
        answered = answered_calls(messages) if answer.tool_calls else set()
        if answered and all(call_key(c) in answered for c in answer.tool_calls):
            # a call whose result is already here: no LLM can make it better; the caller
            # (``CollabChatModel``) has the turn answered from the result instead
            trace.strategy, trace.reason = self.name, "the SLM repeated an answered call"
            yield from answer_chunks(answer, trace)
        elif self.judge(messages, answer, trace):
            yield from relay(self.llm, messages, "llm", trace, **kwargs)
        else:
            yield from answer_chunks(answer, trace)
