"""Speculative decoding's loop: a drafter proposes, the target verifies in one pass, losslessly.

The draft length adapts to the measured acceptance rate and costs, and
speculation switches off (falling back to the target alone) when it would not
pay, probing again later.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from collab.models.engine import Engine, Sampling
from collab.speculative.acceptance import accept_greedy, accept_sampling
from collab.speculative.drafters import CombinedDrafter, Drafter, ModelDrafter
from collab.speculative.verifiers import LocalVerifier, Verifier, check_same_vocabulary


@dataclass
class CostModel:
    """Measured costs and acceptance, and the draft length they call for.

    Acceptance is learnt per draft position: a_i, the chance that token i is
    kept given that the ones before it were. Expected tokens per round with
    draft length g are 1 + sum_j prod_{i<=j} a_i — with one a for all
    positions, the familiar (1 - a^(g+1)) / (1 - a). Per position matters for
    prompt-lookup drafts, whose misses come at the start of a draft and whose
    hits run long. A round costs g draft steps plus one target pass over g + 1
    tokens; the target alone costs one pass over 1 token per token.

    Pass costs are measured per length, not assumed linear: on CPUs a batch
    switches to matrix-matrix kernels past a few tokens, so 32 tokens can cost
    little more than 8. Between measured lengths the cost is interpolated;
    beyond the longest one it follows the last measured slope.
    """

    max_gamma: int = 32
    smoothing: float = 0.3  # weight of a new timing
    decay: float = 0.95  # weight of a position's counts so far, each time it is judged
    prior: float = 0.7  # acceptance assumed where nothing was tried, worth one round
    draft_step_s: float = 0.0
    draft_overhead_s: float = 0.0  # per round: the drafter catching up on the context
    verify_s: dict[int, float] = field(default_factory=dict)
    tried: npt.NDArray[np.float64] = field(init=False)
    kept: npt.NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        self.tried = np.zeros(self.max_gamma)
        self.kept = np.zeros(self.max_gamma)

    def observe(
        self, proposed: int, accepted: int, step_s: float, verify_s: float, overhead_s: float = 0.0
    ) -> None:
        """One round: tokens proposed and kept; seconds per draft step, to verify, to catch up."""
        w = self.smoothing
        if proposed:
            self.draft_overhead_s = (1 - w) * self.draft_overhead_s + w * overhead_s
            reached = min(accepted + 1, proposed, self.max_gamma)  # positions judged
            self.tried[:reached] = self.tried[:reached] * self.decay + 1
            self.kept[:reached] *= self.decay
            self.kept[: min(accepted, self.max_gamma)] += 1
            old_step = self.draft_step_s
            self.draft_step_s = step_s if not old_step else (1 - w) * old_step + w * step_s
        n = proposed + 1
        old = self.verify_s.get(n)
        self.verify_s[n] = verify_s if old is None else (1 - w) * old + w * verify_s

    def position_acceptance(self) -> npt.NDArray[np.float64]:
        """a_i for each draft position i: kept / tried, with a prior worth one round."""
        return (self.kept + self.prior) / (self.tried + 1)

    @property
    def calibrated(self) -> bool:
        """Whether a one-token pass, the unit of every prediction, has been measured."""
        return 1 in self.verify_s

    def pass_cost(self, n: int) -> float:
        """Seconds of a target pass over n tokens (needs ``calibrated``).

        Interpolated between measured lengths; past the longest, extended along the
        last measured slope (free drafters still try longer drafts now and then,
        which replaces the guess with a measurement).
        """
        known = sorted(self.verify_s.items())
        xs, ys = zip(*known, strict=True)
        ys = tuple(np.maximum.accumulate(ys))
        if n > xs[-1] and len(xs) > 1:
            slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
            return float(ys[-1] + slope * (n - xs[-1]))
        return float(np.interp(n, xs, ys))

    def expected_tokens(self, gamma: int) -> float:
        return float(1 + np.cumprod(self.position_acceptance()[:gamma]).sum())

    def round_cost(self, gamma: int) -> float:
        return self.draft_overhead_s + gamma * self.draft_step_s + self.pass_cost(gamma + 1)

    def speedup(self, gamma: int) -> float:
        return self.expected_tokens(gamma) / self.round_cost(gamma) * self.pass_cost(1)

    def best(self) -> tuple[int, float]:
        """(draft length, predicted speedup over the target alone).

        Lengths grow at most twofold past the longest pass measured, so that an
        optimistic guess costs one modest round, not one of ``max_gamma``.
        """
        reach = min(self.max_gamma, max(4, 2 * (max(self.verify_s) - 1)))
        options = [(g, self.speedup(g)) for g in range(1, reach + 1)]
        return max(options, key=lambda o: o[1])


@dataclass
class SpecStats:
    """One call's rounds. Predicted and measured speedups are ratios of sums over the call."""

    rounds: int = 0
    proposed: int = 0
    accepted: int = 0
    produced: int = 0
    written: int = 0  # tokens produced that the verifier chose, not the drafter
    read: int = 0  # tokens the verifier was given to read, summed over its passes
    plain_steps: int = 0
    seconds: float = 0.0
    gammas: list[int] = field(default_factory=list)
    expected_tokens: float = 0.0  # what the cost model predicted, summed over steps
    expected_s: float = 0.0
    unit_s: float = 0.0  # one plain target step, as measured by the end of the call

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    def summary(self) -> dict[str, Any]:
        def ratio(tokens: float, seconds: float) -> float:
            return round(tokens / seconds * self.unit_s, 3) if seconds else 0.0

        return {
            "acceptance": round(self.acceptance, 3),
            "proposed": self.proposed,
            "accepted": self.accepted,
            "rounds": self.rounds,
            "plain_steps": self.plain_steps,
            "read": self.read,
            "written": self.written,
            "mean_gamma": round(float(np.mean(self.gammas)), 2) if self.gammas else 0.0,
            "predicted_speedup": ratio(self.expected_tokens, self.expected_s),
            "measured_speedup": ratio(self.produced, self.seconds),
        }


class SpeculativeDecoder:
    """Draft-and-verify token generation: a drafter proposes, a verifier judges."""

    def __init__(
        self,
        target: Engine | Verifier,
        drafter: Drafter,
        *,
        gamma: int | None = None,
        max_gamma: int = 32,
        off_below: float = 1.0,
        probe_share: float = 0.05,
        explore_every: int = 32,
    ) -> None:
        self.verifier: Verifier = LocalVerifier(target) if isinstance(target, Engine) else target
        self.drafter = drafter
        self.fixed_gamma = gamma
        self.costs = CostModel(max_gamma=max_gamma)
        self.off_below = off_below
        self.probe_share = probe_share
        self.explore_every = explore_every
        self._off_s = 0.0  # target-alone seconds since speculation was last tried
        self.stats = SpecStats()
        self._draft_model = draft_model(drafter)
        if self._draft_model is not None:
            check_same_vocabulary(self._draft_model.model.engine, self.verifier.model)

    def _calibrate(self, tokens: list[int]) -> None:
        """Price an untried draft model before the first draft, which would cost its catch-up.

        One draft step, and the target's pass over 2 tokens (re-reading the
        context's last two), are enough to see a drafter that cannot pay: the
        prediction then keeps speculation off, and probes stay within their share.
        """
        model = self._draft_model
        if (
            model is None
            or self.fixed_gamma is not None
            or self.costs.draft_step_s
            or not isinstance(self.verifier, LocalVerifier)
        ):
            return
        if 2 not in self.costs.verify_s and len(tokens) > 2:
            start = time.perf_counter()
            self.verifier.argmax(tokens, len(tokens) - 2)
            self.costs.verify_s[2] = time.perf_counter() - start
        self.costs.draft_step_s = model.step_seconds(tokens[-1])

    def _choose(self, since_explore: int, behind: int) -> int:
        if self.fixed_gamma is not None:
            return self.fixed_gamma
        if not self.costs.calibrated:
            return 0  # one plain step first: the unit every prediction is measured in
        costs = self.costs
        gamma, predicted = costs.best()
        longest = max(costs.verify_s) - 1
        free = costs.draft_step_s < 0.05 * costs.pass_cost(1)  # prompt lookup
        if free and longest < costs.max_gamma and since_explore >= self.explore_every:
            # Now and then try a longer draft than ever verified: long passes can
            # cost far less per token than short ones, which only a measurement shows.
            return min(costs.max_gamma, 2 * longest)
        if predicted >= self.off_below:
            return gamma
        # Not worth it now: the target alone, with a probe now and then, whose
        # predicted loss, with the drafter's catch-up on the tokens it has not
        # seen (a prefill runs ~4x faster per token than a step), stays within
        # ``probe_share`` of the time spent without speculation.
        catch_up = behind * costs.draft_step_s / 4
        loss = costs.round_cost(gamma) - costs.draft_overhead_s + catch_up
        loss -= costs.expected_tokens(gamma) * costs.pass_cost(1)
        return gamma if self._off_s * self.probe_share >= loss else 0

    def generate(self, prompt: Sequence[int], sampling: Sampling) -> Generator[int, None, None]:
        """Tokens after ``prompt``; the caller holds the target's (and drafter's) lock."""
        rng = np.random.default_rng(sampling.seed)
        self.stats = SpecStats()  # per call; the cost model keeps learning across calls
        tokens = list(prompt)
        since_explore = drafted_at = 0  # drafted_at: context length at the last draft
        n_ctx = getattr(self.verifier.model, "n_ctx", None)
        self.verifier.prefill(tokens)  # so that verify timings measure verification only
        self._calibrate(tokens)
        start = time.perf_counter()
        try:
            while True:
                gamma = self._choose(since_explore, len(tokens) - drafted_at)
                if isinstance(n_ctx, int):  # a draft must not push the check past the context
                    gamma = max(0, min(gamma, n_ctx - len(tokens) - 1))
                draft = self.drafter.propose(tokens, gamma, sampling) if gamma else None
                proposed = draft.tokens if draft else []
                if proposed and self.costs.calibrated:  # its prediction, before the round
                    self.stats.expected_tokens += self.costs.expected_tokens(len(proposed))
                    self.stats.expected_s += self.costs.round_cost(len(proposed))
                t1 = time.perf_counter()
                checked = [*tokens, *proposed]
                self.stats.read += len(checked)
                if sampling.temperature <= 0:
                    best = self.verifier.argmax(checked, len(tokens) - 1)
                    t2 = time.perf_counter()
                    kept, nxt = accept_greedy(proposed[: len(best) - 1], best)
                else:
                    p = self.verifier.probs(checked, len(tokens) - 1, sampling)
                    t2 = time.perf_counter()
                    kept, nxt = accept_sampling(proposed, draft.probs if draft else None, p, rng)
                step_s, overhead_s = (draft.step_s, draft.overhead_s) if draft else (0.0, 0.0)
                self.costs.observe(len(proposed), kept, step_s, t2 - t1, overhead_s)
                self.drafter.update(len(proposed), kept)
                self._count(gamma, len(proposed), kept)
                self._off_s = 0.0 if proposed else self._off_s + (t2 - t1)
                drafted_at = len(tokens) if proposed else drafted_at
                longest = len(proposed) >= max(self.costs.verify_s) - 1
                since_explore = 0 if longest else since_explore + 1
                for i, token in enumerate([*proposed[:kept], nxt]):
                    self.stats.produced += 1
                    self.stats.written += i == kept
                    tokens.append(token)
                    yield token
        finally:
            self.stats.seconds += time.perf_counter() - start
            if self.costs.calibrated:
                self.stats.unit_s = self.costs.pass_cost(1)

    def _count(self, gamma: int, proposed: int, kept: int) -> None:
        stats = self.stats
        if proposed:
            stats.rounds += 1
            stats.proposed += proposed
            stats.accepted += kept
            stats.gammas.append(gamma)
        else:
            stats.plain_steps += 1
            stats.expected_tokens += 1
            stats.expected_s += self.costs.pass_cost(1)


def draft_model(drafter: Drafter) -> ModelDrafter | None:
    if isinstance(drafter, ModelDrafter):
        return drafter
    if isinstance(drafter, CombinedDrafter):
        return drafter.model
    return None
