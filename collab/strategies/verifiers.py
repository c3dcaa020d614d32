"""Verifiers for speculative decoding: the target's judgement of a drafted continuation.

In-process models give full logits, so both greedy and exact sampling work. A
server gives log-probabilities of prompt tokens only for its top N, so greedy
verification works and exact sampling does not: that is refused, not faked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from collab.errors import CapabilityError
from collab.models.local import LocalChatModel, Sampling
from collab.models.openai import OpenAICompatibleChatModel
from collab.strategies.acceptance import Probs, processed_probs


class Verifier(Protocol):
    name: str

    @property
    def model(self) -> object: ...

    def prefill(self, tokens: Sequence[int]) -> None:
        """Evaluate all but the last token ahead of the first verification."""
        ...

    def argmax(self, tokens: Sequence[int], first: int) -> list[int]:
        """The target's greedy choice after each of ``tokens[first:]``."""
        ...

    def probs(self, tokens: Sequence[int], first: int, sampling: Sampling) -> Probs:
        """The target's sampling distribution after each of ``tokens[first:]``."""
        ...


@dataclass
class LocalVerifier:
    """An in-process target; its KV cache keeps the verified prefix across rounds."""

    model: LocalChatModel
    name: str = "in-process"

    def prefill(self, tokens: Sequence[int]) -> None:
        if len(tokens) > 1:
            self.model.logits_unlocked(tokens[:-1], len(tokens) - 1)

    def argmax(self, tokens: Sequence[int], first: int) -> list[int]:
        logits = self.model.logits_unlocked(tokens, first)
        return [int(t) for t in np.argmax(logits, axis=-1)]

    def probs(self, tokens: Sequence[int], first: int, sampling: Sampling) -> Probs:
        logits = self.model.logits_unlocked(tokens, first)
        return processed_probs(logits, sampling.temperature, sampling.top_k, sampling.top_p)


@dataclass
class RemoteVerifier:
    """A server that takes token-id prompts and returns their log-probabilities (vLLM, ...).

    Verification must score the exact token sequence drafted, which a server that
    takes only text cannot (drafts need not be the canonical tokenization of their
    text): such servers are refused here, before any generation starts.
    """

    model: OpenAICompatibleChatModel
    name: str = "remote"

    def __post_init__(self) -> None:
        caps = self.model.server_capabilities()
        if not caps.token_prompts:
            raise CapabilityError(
                f"{self.model.base_url} ({caps.kind}) takes only text prompts, so it cannot "
                "score the exact token sequences speculative decoding drafts",
                hint="verify in-process, or serve the target with a server that accepts "
                "token-id prompts and returns prompt log-probabilities (vLLM, llama.cpp's "
                "llama-server)",
            )

    def prefill(self, tokens: Sequence[int]) -> None:
        pass  # the server keeps its own prefix cache

    def argmax(self, tokens: Sequence[int], first: int) -> list[int]:
        rows = self.model.prompt_logprob_rows(list(tokens))
        return [max(row.items(), key=lambda kv: kv[1])[0] for row in rows[first:]]

    def probs(self, tokens: Sequence[int], first: int, sampling: Sampling) -> Probs:
        raise CapabilityError(
            f"{self.model.base_url} reports only the top log-probabilities of each prompt "
            "token, so speculative sampling against it cannot be exact",
            hint="use temperature=0 (greedy verification is exact), or an in-process target",
        )
