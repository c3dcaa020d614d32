"""Acceptance rules of speculative decoding (Leviathan et al. 2023; Chen et al. 2023).

Greedy: keep drafts while they equal the target's argmax, then take the target's
token; the output is the target's own greedy output. Sampling: keep draft x with
probability min(1, p(x)/q(x)); at the first rejection sample from
normalize(max(0, p - q)); if all are kept, sample one more from p. The output
is distributed exactly as the target's. Temperature, top-k and top-p shape both
p and q before the rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Probs = npt.NDArray[np.float64]


def processed_probs(
    logits: npt.NDArray[np.float32], temperature: float, top_k: int, top_p: float
) -> Probs:
    """Row-wise sampling distributions: temperature, then top-k, then top-p."""
    scores = logits.astype(np.float64) / max(temperature, 1e-6)
    if 0 < top_k < scores.shape[-1]:
        kth = np.partition(scores, -top_k, axis=-1)[:, -top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)
    scores -= scores.max(axis=-1, keepdims=True)
    probs: Probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-probs, axis=-1)
        ordered = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(ordered, axis=-1) - ordered  # mass of strictly likelier tokens
        keep_sorted = before < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def accept_greedy(draft: Sequence[int], best: Sequence[int]) -> tuple[int, int]:
    """(how many drafts to keep, the target's next token), given the target's argmax
    after each draft prefix (``len(draft) + 1`` of them)."""
    kept = 0
    while kept < len(draft) and best[kept] == draft[kept]:
        kept += 1
    return kept, best[kept]


def accept_sampling(
    draft: Sequence[int],
    q: Probs | None,
    p: Probs,
    rng: np.random.Generator,
) -> tuple[int, int]:
    """(how many drafts to keep, the next token) by the speculative sampling rule.

    ``p`` has ``len(draft) + 1`` rows (the target after each prefix); ``q`` has
    one row per draft token, or is None for a deterministic drafter (a point
    mass on each draft token).
    """
    for i, x in enumerate(draft):
        qx = 1.0 if q is None else float(q[i, x])
        if qx > 0 and rng.random() < min(1.0, float(p[i, x]) / qx):
            continue
        if q is None:
            residual = p[i].copy()
            residual[x] = 0.0
        else:
            residual = np.maximum(p[i] - q[i], 0.0)
        total = residual.sum()
        if total <= 0:  # p == q there: any rejection is measure-zero; fall back to p
            residual, total = p[i], p[i].sum()
        return i, int(rng.choice(residual.size, p=residual / total))
    last = p[len(draft)]
    return len(draft), int(rng.choice(last.size, p=last / last.sum()))
