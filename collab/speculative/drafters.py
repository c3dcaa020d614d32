"""Drafters for speculative decoding: where the candidate tokens come from.

A drafter proposes up to ``k`` tokens after a context and learns how many were
accepted; verification lives in the decoding loop (``collab.speculative.decoder``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from collab.models.engine import Sampling
from collab.models.local import LocalChatModel
from collab.speculative.acceptance import processed_probs


@dataclass
class Draft:
    """Proposed tokens, and the draft distribution of each when the drafter has one."""

    tokens: list[int]
    probs: npt.NDArray[np.float64] | None = None  # (len(tokens), vocab), for sampling
    source: str = ""
    step_s: float = 0.0  # seconds per drafted token
    overhead_s: float = 0.0  # seconds spent catching up on the context before drafting
    match: int = 0  # a lookup draft: how many of the context's last tokens its source matched


class Drafter(Protocol):
    name: str

    def lookup(self, context: Sequence[int], k: int) -> Draft:
        """Up to ``k`` tokens that cost nothing to draft (prompt lookup), or none.

        The decoder asks this first every round, and sizes the draft by the
        match's strength; ``propose`` is asked only when this finds nothing.
        """
        ...

    def propose(self, context: Sequence[int], k: int, sampling: Sampling | None = None) -> Draft:
        """Up to ``k`` tokens after ``context``, drafted for a request decoded with ``sampling``."""
        ...

    def update(self, proposed: int, accepted: int) -> None: ...


@dataclass
class NgramDrafter:
    """Prompt-lookup drafts: continue the earlier match of the context's tail.

    The match is the longest one (up to ``max_ngram`` tokens, at least
    ``min_ngram``), the most recent among equals; its length tells the decoder
    how far to trust it (a copy 16 tokens deep runs on for long; a 2-token
    match, where an edit just changed the text, often does not). Free to
    compute, and strong when the output copies the input (edits, extraction,
    RAG). Proposals are point masses: ``probs`` stays None.
    """

    max_ngram: int = 16
    min_ngram: int = 2
    name: str = "ngram"

    def lookup(self, context: Sequence[int], k: int) -> Draft:
        tokens = np.asarray(context, dtype=np.int64)
        n_total = tokens.size
        # ends[i]: where an earlier copy of the tail ends (room left for a continuation)
        ends = np.flatnonzero(tokens[: n_total - 1] == tokens[n_total - 1 :])
        matched = 1
        while ends.size and matched < self.max_ngram:
            longer = ends[ends >= matched]
            longer = longer[tokens[longer - matched] == tokens[n_total - 1 - matched]]
            if not longer.size:
                break
            ends, matched = longer, matched + 1
        if not ends.size or matched < self.min_ngram:
            return Draft([], source=self.name)
        start = int(ends[-1]) + 1  # the most recent of the longest matches
        return Draft(tokens[start : start + k].tolist(), source=self.name, match=matched)

    def propose(self, context: Sequence[int], k: int, sampling: Sampling | None = None) -> Draft:
        return self.lookup(context, k)

    def update(self, proposed: int, accepted: int) -> None:
        pass


@dataclass
class ModelDrafter:
    """Drafts from a small model that shares the target's tokenizer.

    Greedy drafts at temperature 0; otherwise samples from the processed draft
    distribution ``q`` and returns it, as exact speculative sampling needs.
    Sampling settings left as None follow the request's (the closer q is to
    the target's p, the more drafts are kept). The caller holds the model's engine lock.
    """

    model: LocalChatModel
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    name: str = "model"
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def lookup(self, context: Sequence[int], k: int) -> Draft:
        return Draft([], source=self.name)  # every token costs a step of the model

    def propose(self, context: Sequence[int], k: int, sampling: Sampling | None = None) -> Draft:
        request = sampling or Sampling(temperature=0.0)
        temperature = request.temperature if self.temperature is None else self.temperature
        top_k = request.top_k if self.top_k is None else self.top_k
        top_p = request.top_p if self.top_p is None else self.top_p
        engine = self.model.engine
        ctx = list(context)
        out: list[int] = []
        rows = []
        # Catch up on the context first (the prompt, or what the target wrote while
        # speculation was off): timed apart, as the price of drafting at all.
        caught = time.perf_counter()
        engine.logits(ctx[:-1], len(ctx) - 1)
        start = time.perf_counter()
        for _ in range(k):
            logits = engine.logits(ctx, len(ctx) - 1)[0]
            if temperature <= 0:
                token = int(np.argmax(logits))
            else:
                q = processed_probs(logits[None, :], temperature, top_k, top_p)[0]
                token = int(self._rng.choice(q.size, p=q))
                rows.append(q)
            out.append(token)
            ctx.append(token)
            if engine.is_eog(token):
                break  # nothing after the end of the turn is ever used
        probs = np.stack(rows) if rows else None
        k = len(out)
        step_s = (time.perf_counter() - start) / k if k else 0.0
        return Draft(out, probs, source=self.name, step_s=step_s, overhead_s=start - caught)

    def update(self, proposed: int, accepted: int) -> None:
        pass

    def step_seconds(self, token: int) -> float:
        """What one draft step costs, timed on a one-token context (no catch-up)."""
        engine = self.model.engine
        engine.logits([token], 0)  # warm
        start = time.perf_counter()
        engine.logits([token], 0)
        return time.perf_counter() - start


@dataclass
class CombinedDrafter:
    """N-gram drafts when the context offers a match, model drafts otherwise."""

    ngram: NgramDrafter
    model: ModelDrafter
    name: str = "ngram+model"

    def lookup(self, context: Sequence[int], k: int) -> Draft:
        return self.ngram.lookup(context, k)

    def propose(self, context: Sequence[int], k: int, sampling: Sampling | None = None) -> Draft:
        draft = self.ngram.propose(context, k, sampling)
        return draft if draft.tokens else self.model.propose(context, k, sampling)

    def update(self, proposed: int, accepted: int) -> None:
        pass
