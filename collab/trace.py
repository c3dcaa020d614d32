"""Usage, cost and latency records shared by every backend, strategy, server and benchmark."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from langchain_core.messages.ai import UsageMetadata
from pydantic import BaseModel, Field

Location = Literal["local", "remote"]

# Key under which a trace travels in ``AIMessage.response_metadata``.
TRACE_KEY = "collab"


class Price(BaseModel):
    """Price of one model in US dollars per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class ModelCall(BaseModel):
    """What one call of one model cost."""

    model: str
    location: Location
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    time_to_first_token_s: float | None = None
    cost_usd: float = 0.0
    role: str | None = Field(default=None, description="slm, llm, drafter, verifier, ...")

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.latency_s if self.latency_s > 0 else 0.0


class Trace(BaseModel):
    """Everything one request cost, and why it was handled the way it was."""

    calls: list[ModelCall] = Field(default_factory=list)
    strategy: str | None = None
    reason: str | None = None
    escalations: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    def add(self, call: ModelCall) -> None:
        self.calls.append(call)

    def merge(self, other: Trace) -> Trace:
        """A new trace holding both traces' calls; ``self`` wins on strategy and reason."""
        return Trace(
            calls=[*self.calls, *other.calls],
            strategy=self.strategy or other.strategy,
            reason=self.reason or other.reason,
            escalations=[*self.escalations, *other.escalations],
            extra={**other.extra, **self.extra},
        )

    @property
    def input_tokens(self) -> int:
        return sum(c.input_tokens for c in self.calls)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.calls)

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    @property
    def latency_s(self) -> float:
        return sum(c.latency_s for c in self.calls)

    def llm_only_cost(self, llm_price: Price) -> float:
        """What the same tokens would have cost had every call gone to the LLM."""
        return sum(llm_price.cost(c.input_tokens, c.output_tokens) for c in self.calls)

    def tokens_by(self, location: Location) -> tuple[int, int]:
        """(input, output) tokens spent on models at ``location``."""
        mine = [c for c in self.calls if c.location == location]
        return sum(c.input_tokens for c in mine), sum(c.output_tokens for c in mine)

    def usage_metadata(self) -> UsageMetadata:
        return UsageMetadata(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.input_tokens + self.output_tokens,
        )

    def to_metadata(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_metadata(cls, response_metadata: dict[str, Any]) -> Trace:
        """The trace a collab model put into a message's ``response_metadata``."""
        raw = response_metadata.get(TRACE_KEY)
        return cls.model_validate(raw) if raw else cls()


class Stopwatch:
    """Measures a call's latency and time to first token."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.end: float | None = None

    def mark_first(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def stop(self) -> None:
        self.end = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return (self.end or time.perf_counter()) - self.start

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.start


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    watch = Stopwatch()
    try:
        yield watch
    finally:
        watch.stop()
