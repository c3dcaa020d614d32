"""The speculative strategy: a ``SpeculativeChatModel`` answers, token-level and lossless."""

from __future__ import annotations

from collab.strategies.baselines import SLMOnly


class Speculative(SLMOnly):
    """The strategy the policy picks: a ``SpeculativeChatModel`` answers, losslessly."""

    name = "speculative"
    role = "llm"
