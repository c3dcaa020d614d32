"""The one LLM-down fallback: when the LLM cannot be reached, what the trace records of it."""

from __future__ import annotations

from typing import Literal

from collab.errors import ModelUnavailableError
from collab.trace import Trace

OnLLMDown = Literal["slm", "fail"]


def llm_down(exc: ModelUnavailableError, on_llm_down: OnLLMDown, instead: str) -> Trace:
    """The trace of answering without the LLM (``instead`` says how); raises when the
    policy says ``fail``."""
    if on_llm_down == "fail":
        raise exc
    trace = Trace(extra={"llm_down": True})
    trace.escalations.append(f"LLM unavailable ({exc.message}): {instead}")
    return trace
