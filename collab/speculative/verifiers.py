"""Verifiers for speculative decoding: the target's judgement of a drafted continuation.

In-process models give full logits, so both greedy and exact sampling work. A
server gives log-probabilities of prompt tokens only for its top N, so greedy
verification works and exact sampling does not: that is refused, not faked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from collab.errors import CapabilityError, ConfigurationError, TextRoundTripError
from collab.models.base import vocab_fingerprint
from collab.models.engine import Engine, Sampling, eos_token
from collab.models.profile import profile_of
from collab.models.prompt_logprobs import UNNAMED
from collab.speculative.acceptance import Probs, processed_probs


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


class PromptScorer(Protocol):
    """A server model that reads a prompt and returns its log-probabilities
    (``collab.models.openai.OpenAICompatibleChatModel``)."""

    base_url: str

    def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...

    def prompt_logprob_rows(
        self, tokens: list[int], *, first: int = 0, text: str | None = None
    ) -> list[dict[int, float]]: ...

    def greedy_next(self, tokens: list[int], text: str | None = None) -> int | None: ...


@dataclass
class LocalVerifier:
    """An in-process target; its KV cache keeps the verified prefix across rounds."""

    model: Engine
    name: str = "in-process"

    def prefill(self, tokens: Sequence[int]) -> None:
        if len(tokens) > 1:
            self.model.logits(tokens[:-1], len(tokens) - 1)

    def argmax(self, tokens: Sequence[int], first: int) -> list[int]:
        logits = self.model.logits(tokens, first)
        return [int(t) for t in np.argmax(logits, axis=-1)]

    def probs(self, tokens: Sequence[int], first: int, sampling: Sampling) -> Probs:
        logits = self.model.logits(tokens, first)
        return processed_probs(logits, sampling.temperature, sampling.top_k, sampling.top_p)


@dataclass(frozen=True)
class Tolerance:
    """When a drafted token the target would not have picked is kept anyway (lossy).

    A drafted token stands when the target ranks it within its ``top_k``, or
    when its log-probability is within ``margin`` of the target's best (the
    deferral rules of speculative cascades). The default keeps only the
    target's own greedy choice: lossless.
    """

    top_k: int = 1
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.margin < 0:
            raise ConfigurationError(
                f"tolerance top_k={self.top_k}, margin={self.margin}",
                hint="top_k is at least 1 and margin at least 0 (1 and 0: lossless)",
            )

    @property
    def lossless(self) -> bool:
        return self.top_k == 1 and self.margin == 0

    def keeps(self, row: dict[int, float], drafted: int) -> bool:
        """Whether ``drafted`` stands, judged by ``row`` (log-probabilities by token)."""
        if self.lossless or drafted not in row:
            return False
        mine = row[drafted]
        best = max(row.values())
        higher = sum(1 for t, v in row.items() if v > mine and t != UNNAMED)
        return higher < self.top_k or best - mine <= self.margin


@dataclass
class RemoteVerifier:
    """A server hosting the target, judging drafts from the prompt log-probabilities it returns.

    Servers that take token-id prompts (vLLM) score the drafted ids directly.
    Text-only servers (llama-cpp-python) need ``twin``: an in-process model with
    the server model's tokenizer, which writes the tokens out with their control
    tokens; every round checks that the server reads that text back as exactly
    those tokens, shortening the draft where it would not. Drafts that are not
    the tokenizer's own reading of their text cannot be checked there, and the
    server names its top tokens by text, so a choice it names ambiguously (its
    end-of-text token, part of a UTF-8 character) is asked of it directly.
    """

    model: PromptScorer
    twin: Engine | None = None
    tolerance: Tolerance = Tolerance()
    name: str = "remote"

    def __post_init__(self) -> None:
        profile = profile_of(self.model)
        if not profile.prompt_logprobs:
            raise CapabilityError(
                f"{self.model.base_url} returns no prompt log-probabilities, which "
                "verification needs",
                hint="start llama-cpp-python's server with --logits_all true, or use vLLM",
            )
        if not profile.token_prompts and self.twin is None:
            raise CapabilityError(
                f"{self.model.base_url} takes only text prompts, so it cannot "
                "score drafted token ids without a local model that writes them as text",
                hint="pass twin= (the draft model, which shares the server model's "
                "tokenizer), or use SpeculativeChatModel.remote(draft, server)",
            )
        if self.twin is not None:
            check_same_vocabulary(self.twin, self.model)

    def prefill(self, tokens: Sequence[int]) -> None:
        pass  # the server keeps its own prefix cache

    def argmax(self, tokens: Sequence[int], first: int) -> list[int]:
        """As ``Verifier.argmax``, but possibly for a shorter draft (see the class)."""
        tokens = list(tokens)
        end = len(tokens)
        while True:
            try:
                rows = self.model.prompt_logprob_rows(
                    tokens[:end], first=first, text=self._text(tokens[:end])
                )
                break
            except TextRoundTripError:
                if end <= first + 1 or self.twin is None:
                    raise  # even the verified text does not survive the round trip
                end -= 1
        best: list[int] = []
        for i, row in enumerate(rows):
            choice = max(row, key=lambda t: row[t]) if row else UNNAMED
            if choice == UNNAMED:
                seen = tokens[: first + 1 + i]
                asked = self.model.greedy_next(seen, self._text(seen))
                if asked is None:  # the server ends its text here
                    return [*best, self._end_of_text()]
                choice = asked
            drafted = first + 1 + i
            if (
                drafted < end
                and tokens[drafted] != choice
                and self.tolerance.keeps(row, tokens[drafted])
            ):
                choice = tokens[drafted]
            best.append(choice)
            if drafted >= end or tokens[drafted] != choice:
                break  # what follows a rejected token is never looked at
        return best

    def _end_of_text(self) -> int:
        if self.twin is None:
            raise CapabilityError(f"{self.model.base_url} ended its text where no token names it")
        return eos_token(self.twin)

    def _text(self, tokens: list[int]) -> str | None:
        return None if self.twin is None else self.twin.detokenize(tokens, special=True)

    def probs(self, tokens: Sequence[int], first: int, sampling: Sampling) -> Probs:
        raise CapabilityError(
            f"{self.model.base_url} reports only the top log-probabilities of each prompt "
            "token, so speculative sampling against it cannot be exact",
            hint="use temperature=0 (greedy verification is exact), or an in-process target",
        )


def check_same_vocabulary(draft: Any, target: Any) -> None:
    """Refuse a pair whose tokenizers differ: their token ids would mean different text."""
    a, b = vocab_fingerprint(draft), vocab_fingerprint(target)
    if a != b:
        raise ConfigurationError(
            f"draft model {getattr(draft, 'name', draft)!r} and target "
            f"{getattr(target, 'name', getattr(target, 'model', target))!r} tokenize differently "
            f"(fingerprints {a} vs {b})",
            hint="speculative decoding needs a draft model from the target's family "
            "(same tokenizer), or the n-gram drafter",
        )
