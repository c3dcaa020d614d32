"""Speculative decoding's loop: a drafter proposes, the target verifies in one pass, losslessly.

The draft length adapts to the measured acceptance rate and costs, and
speculation switches off (falling back to the target alone) when it would not
pay, probing again later.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from collab.models.engine import Engine, Sampling
from collab.speculative.acceptance import accept_greedy, accept_sampling
from collab.speculative.drafters import CombinedDrafter, Draft, Drafter, ModelDrafter
from collab.speculative.verifiers import LocalVerifier, Verifier, check_same_vocabulary

# Lookup drafts by the length of their match: kind 0 is a model's draft, kinds 1-4
# prompt lookups matched over 2-3, 4-7, 8-15 and 16 or more tokens.
MATCH_KINDS = (4, 8, 16)


def draft_kind(match: int) -> int:
    """The cost model's class of a draft: 0 for a model's, 1-4 by lookup match length."""
    return 0 if match <= 0 else 1 + int(np.searchsorted(MATCH_KINDS, match, side="right"))


@dataclass
class CostModel:
    """Measured costs and acceptance, and the draft length they call for.

    Acceptance is learnt per draft position: a_i, the chance that token i is
    kept given that the ones before it were. Expected tokens per round with
    draft length g are 1 + sum_j prod_{i<=j} a_i — with one a for all
    positions, the familiar (1 - a^(g+1)) / (1 - a). Per position matters for
    prompt-lookup drafts, whose misses come at the start of a draft and whose
    hits run long. It is also learnt per kind of draft (``draft_kind``): a
    lookup that matched 16 tokens of the context is a copy in progress and runs
    on for long, one that matched 2 (just after an edit) often stops at once.
    A round costs g draft steps (none for a lookup) plus one target pass over
    g + 1 tokens; the target alone costs one pass over 1 token per token.

    Pass costs are measured per length, not assumed linear: on CPUs a batch
    switches to matrix-matrix kernels past a few tokens, so 32 tokens can cost
    little more than 8. Between measured lengths the cost is interpolated;
    beyond the longest one it follows the last measured slope.
    """

    max_gamma: int = 32
    smoothing: float = 0.3  # weight of a new timing
    decay: float = 0.95  # weight of a position's counts so far, each time it is judged
    prior: float = 0.7  # acceptance assumed where nothing was tried, worth one round
    draft_step_s: float = 0.0  # a model draft's, per token
    draft_overhead_s: float = 0.0  # per model draft: the drafter catching up on the context
    verify_s: dict[int, float] = field(default_factory=dict)
    tried: npt.NDArray[np.float64] = field(init=False)  # (kind, position)
    kept: npt.NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        self.tried = np.zeros((len(MATCH_KINDS) + 2, self.max_gamma))
        self.kept = np.zeros_like(self.tried)

    def observe(
        self,
        proposed: int,
        accepted: int,
        step_s: float,
        verify_s: float,
        overhead_s: float = 0.0,
        kind: int = 0,
    ) -> None:
        """One round: tokens proposed and kept; seconds per draft step, to verify, to catch
        up; the kind of draft (``draft_kind``)."""
        w = self.smoothing
        if proposed:
            tried, kept = self.tried[kind], self.kept[kind]
            reached = min(accepted + 1, proposed, self.max_gamma)  # positions judged
            tried[:reached] = tried[:reached] * self.decay + 1
            kept[:reached] *= self.decay
            kept[: min(accepted, self.max_gamma)] += 1
        if proposed and not kind:
            self.draft_overhead_s = (1 - w) * self.draft_overhead_s + w * overhead_s
            old_step = self.draft_step_s
            self.draft_step_s = step_s if not old_step else (1 - w) * old_step + w * step_s
        n = proposed + 1
        old = self.verify_s.get(n)
        self.verify_s[n] = verify_s if old is None else (1 - w) * old + w * verify_s

    def position_acceptance(self, kind: int = 0) -> npt.NDArray[np.float64]:
        """a_i for each draft position i: kept / tried, with a prior worth one round.

        The prior of position 0 is ``prior``; of each later one, the rate of the
        position before it. A position seldom reached is assumed as good as the
        last one learnt: a copy kept for 5 tokens is likely to run on, and a model
        draft's acceptance does not change much along the draft.
        """
        kept, tried = self.kept[kind], self.tried[kind]
        rates = np.empty(self.max_gamma)
        prior = self.prior
        for i in range(self.max_gamma):
            prior = rates[i] = (kept[i] + prior) / (tried[i] + 1)
        return rates

    @property
    def calibrated(self) -> bool:
        """Whether a one-token pass, the unit of every prediction, has been measured."""
        return 1 in self.verify_s

    def pass_cost(self, n: int) -> float:
        """Seconds of a target pass over n tokens (needs ``calibrated``).

        A pass over more tokens costs at least as much, and no more per token
        (on CPUs and GPUs alike a batch amortizes reading the weights): measurements
        are held to both, so one slow pass cannot price a length out for good.
        Interpolated between measured lengths; past the longest, extended along the
        slope from a length at most half as long (two neighbouring lengths' noise
        would make that slope anything). Trying a longer draft replaces the guess
        with a measurement.
        """
        xs = np.array(sorted(self.verify_s))
        ys = np.maximum.accumulate([self.verify_s[x] for x in xs])  # longer is never cheaper,
        ys = np.minimum(ys, np.minimum.accumulate(ys / xs) * xs)  # nor dearer per token
        if n > xs[-1] and len(xs) > 1:
            base = max(i for i, x in enumerate(xs) if x <= max(xs[0], xs[-1] / 2))
            slope = (ys[-1] - ys[base]) / (xs[-1] - xs[base])
            return float(ys[-1] + slope * (n - xs[-1]))
        return float(np.interp(n, xs, ys))

    def expected_curve(self, longest: int, kind: int = 0) -> npt.NDArray[np.float64]:
        """Expected tokens per round for draft lengths 0 to ``longest``."""
        kept = np.cumsum(np.cumprod(self.position_acceptance(kind)[:longest]))
        curve: npt.NDArray[np.float64] = 1 + np.concatenate(([0.0], kept))
        return curve

    def expected_tokens(self, gamma: int, kind: int = 0) -> float:
        return float(self.expected_curve(gamma, kind)[-1])

    def round_cost(self, gamma: int, kind: int = 0) -> float:
        drafting = 0.0 if kind else self.draft_overhead_s + gamma * self.draft_step_s
        return drafting + self.pass_cost(gamma + 1)

    def best(self, kind: int = 0, limit: int | None = None) -> tuple[int, float]:
        """(draft length, predicted speedup over the target alone), for a draft of
        ``kind`` at most ``limit`` long.

        Lengths grow at most twofold past the longest pass measured, so that an
        optimistic guess costs one modest round, not one of ``max_gamma``.
        """
        reach = min(self.max_gamma, max(4, 2 * (max(self.verify_s) - 1)), limit or self.max_gamma)
        tokens = self.expected_curve(reach, kind)
        rates = [tokens[g] / self.round_cost(g, kind) for g in range(1, reach + 1)]
        gamma = int(np.argmax(rates)) + 1
        return gamma, rates[gamma - 1] * self.pass_cost(1)


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
        ends: Callable[[int], bool] | None = None,
    ) -> None:
        """``ends``: whether a token ends generation (the target engine's ``is_eog`` when
        ``target`` is an engine): a lookup draft is cut after one, as nothing after it is used."""
        self.verifier: Verifier = LocalVerifier(target) if isinstance(target, Engine) else target
        self.ends = ends or (target.is_eog if isinstance(target, Engine) else None)
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

    def _choose(self, since_explore: int, behind: int, kind: int, limit: int) -> int:
        """The draft length of this round, for a draft of ``kind`` at most ``limit`` long
        (0: the target alone)."""
        if self.fixed_gamma is not None:
            return min(self.fixed_gamma, limit)
        if not self.costs.calibrated:
            return 0  # one plain step first: the unit every prediction is measured in
        costs = self.costs
        gamma, predicted = costs.best(kind, limit)
        longest = max(costs.verify_s) - 1
        if kind and longest < min(costs.max_gamma, limit) and since_explore >= self.explore_every:
            # Now and then try a longer lookup than ever verified: long passes can
            # cost far less per token than short ones, which only a measurement shows.
            return min(costs.max_gamma, 2 * longest, limit)
        if predicted >= self.off_below:
            return gamma
        # Not worth it now: the target alone, with a probe now and then, whose
        # predicted loss, with the drafter's catch-up on the tokens it has not
        # seen (a prefill runs ~4x faster per token than a step), stays within
        # ``probe_share`` of the time spent without speculation.
        catch_up = 0.0 if kind else behind * costs.draft_step_s / 4
        loss = costs.round_cost(gamma, kind) - (0.0 if kind else costs.draft_overhead_s)
        loss += catch_up - costs.expected_tokens(gamma, kind) * costs.pass_cost(1)
        return gamma if self._off_s * self.probe_share >= loss else 0

    def _draft(
        self, tokens: list[int], since_explore: int, behind: int, sampling: Sampling
    ) -> tuple[Draft | None, int]:
        """This round's draft (None: the target alone) and its kind (``draft_kind``).

        A lookup is free, so it is made at full length first and cut to what its
        match's kind has earned; a model's draft is sized before it is made.
        """
        n_ctx = getattr(self.verifier.model, "n_ctx", None)
        room = self.costs.max_gamma  # a draft must not push the check past the context
        if isinstance(n_ctx, int):
            room = max(0, min(room, n_ctx - len(tokens) - 1))
        found = self.drafter.lookup(tokens, room) if room else Draft([])
        end = next((i for i, t in enumerate(found.tokens) if self.ends and self.ends(t)), None)
        if end is not None:  # a copy of the prompt's turn boundary: nothing after it is used
            found = replace(found, tokens=found.tokens[: end + 1])
        if found.tokens:
            kind = draft_kind(found.match)
            gamma = self._choose(since_explore, behind, kind, len(found.tokens))
            return (replace(found, tokens=found.tokens[:gamma]) if gamma else None), kind
        if self._draft_model is None or not room:
            return None, 0  # nothing to look up, and no model to draft with
        gamma = self._choose(since_explore, behind, 0, room)
        return (self.drafter.propose(tokens, gamma, sampling) if gamma else None), 0

    def generate(self, prompt: Sequence[int], sampling: Sampling) -> Generator[int, None, None]:
        """Tokens after ``prompt``; the caller holds the target's (and drafter's) lock."""
        rng = np.random.default_rng(sampling.seed)
        self.stats = SpecStats()  # per call; the cost model keeps learning across calls
        tokens = list(prompt)
        since_explore = drafted_at = 0  # drafted_at: context length at the last model draft
        self.verifier.prefill(tokens)  # so that verify timings measure verification only
        self._calibrate(tokens)
        start = time.perf_counter()
        try:
            while True:
                behind = len(tokens) - drafted_at
                draft, kind = self._draft(tokens, since_explore, behind, sampling)
                proposed = draft.tokens if draft else []
                if proposed and self.costs.calibrated:  # its prediction, before the round
                    self.stats.expected_tokens += self.costs.expected_tokens(len(proposed), kind)
                    self.stats.expected_s += self.costs.round_cost(len(proposed), kind)
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
                self.costs.observe(len(proposed), kept, step_s, t2 - t1, overhead_s, kind)
                self.drafter.update(len(proposed), kept)
                self._count(len(proposed), kept)
                self._off_s = 0.0 if proposed else self._off_s + (t2 - t1)
                drafted_at = len(tokens) if proposed and not kind else drafted_at
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

    def _count(self, proposed: int, kept: int) -> None:
        stats = self.stats
        if proposed:
            stats.rounds += 1
            stats.proposed += proposed
            stats.accepted += kept
            stats.gammas.append(proposed)
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
