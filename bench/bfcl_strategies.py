"""collab's strategies on BFCL items: which calls stand, what the LLM read and wrote.

Each strategy's calls are scored by BFCL's checker (in ``bfcl.py``); here its
escalations are decided, with thresholds fitted on a calibration category, and
the table and plot are drawn. A row of ``rows`` holds, per model and run, the
outcome of that run (``calls``, ``scores``, ``failure``, ``llm_read``,
``llm_written``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from langchain_core.messages import HumanMessage

from collab.strategies.route import TrainedScorer

Rows = list[dict[str, Any]]
Mask = npt.NDArray[np.bool_]


@dataclass
class Result:
    strategy: str
    accuracy: float
    share: float  # of items where the LLM wrote anything
    written: int  # LLM tokens written
    read: int | None  # LLM tokens read (None: not counted)


def escalate(scores: npt.NDArray[Any], fitted: npt.NDArray[Any] | None, share: float) -> Mask:
    """Items whose score is below the ``share`` quantile of ``fitted`` (the calibration
    items' scores); without them, of the other half of ``scores`` (2-fold)."""
    if fitted is not None and len(fitted):
        return np.asarray(scores < np.quantile(fitted, share))
    n = len(scores)
    halves = [np.arange(n) % 2 == 0, np.arange(n) % 2 == 1]
    out = np.zeros(n, dtype=bool)
    for fit, apply in (halves, halves[::-1]):
        if fit.any():
            out |= apply & (scores < np.quantile(scores[fit], share))
    return out


def difficulty(texts: list[str], fit_texts: list[str], needs_llm: list[bool]) -> npt.NDArray[Any]:
    """Route's trained scorer, fitted on ``fit_texts`` (labels: the SLM's call was wrong):
    minus the difficulty of each of ``texts``, so that low scores escalate."""
    if len(set(needs_llm)) < 2:  # nothing to learn from: every item looks the same
        return np.zeros(len(texts))
    scorer = TrainedScorer().fit(fit_texts, needs_llm)
    return -np.array([scorer.difficulty([HumanMessage(t)]) for t in texts])


def read_gaps(rows: Rows, slm: str) -> npt.NDArray[np.float64]:
    """How far below its own choice the LLM found each SLM call (inf: an invalid call, which
    went to the LLM unread)."""
    gaps = [r[f"{slm}/read"].get("read_gap") for r in rows]
    return np.array([np.inf if g is None else g for g in gaps], dtype=np.float64)


def fitted_margin(calibration: Rows, slm: str, llm: str, ok: dict[str, Mask]) -> float:
    """The widest tolerance (nats below the LLM's best) under which the calls kept keep the
    LLM's own accuracy on the calibration items."""
    gaps = read_gaps(calibration, slm)
    target = ok[f"{llm}/collab"].mean()
    best = 0.0
    for margin in sorted({0.0, *gaps[np.isfinite(gaps)]}):
        kept = gaps <= margin
        if np.where(kept, ok[f"{slm}/collab"], ok[f"{llm}/collab"]).mean() >= target:
            best = margin
    return float(best)


def results(
    rows: Rows,
    calibration: Rows,
    slm: str,
    llm: str,
    ok: dict[str, Mask],
    ok_calibration: dict[str, Mask],
    share: float,
    question: Any,
    confidence: Any,
) -> list[Result]:
    """One result per strategy of the README (those not measured for ``slm`` are left out)."""
    llm_ok, slm_ok = ok[f"{llm}/collab"], ok[f"{slm}/collab"]
    written = np.array([r[f"{llm}/collab"]["llm_written"] for r in rows])
    read = np.array([r[f"{llm}/collab"]["llm_read"] for r in rows])

    def mixed(name: str, up: Mask) -> Result:
        return Result(name, float(np.where(up, llm_ok, slm_ok).mean()), float(up.mean()),
                      int(written[up].sum()), int(read[up].sum()))  # fmt: skip

    out = [
        Result("slm_only", float(slm_ok.mean()), 0.0, 0, 0),
        Result("llm_only", float(llm_ok.mean()), 1.0, int(written.sum()), int(read.sum())),
    ]
    texts = [question(r) for r in rows]
    fit_texts = [question(r) for r in calibration]
    labels = [not x for x in ok_calibration.get(f"{slm}/collab", [])]
    if calibration and labels:
        route = difficulty(texts, fit_texts, labels)
        fitted: npt.NDArray[Any] | None = difficulty(fit_texts, fit_texts, labels)
    else:  # no calibration category: 2-fold within these items
        halves = [np.arange(len(rows)) % 2 == i for i in (0, 1)]
        route = np.zeros(len(rows))
        for fit, apply in (halves, halves[::-1]):
            got = difficulty([t for t, a in zip(texts, apply, strict=True) if a],
                             [t for t, f in zip(texts, fit, strict=True) if f],
                             [not x for x in slm_ok[fit]])  # fmt: skip
            route[apply] = got
        fitted = None
    out.append(mixed("route (trained)", escalate(route, fitted, share)))
    conf = np.array([confidence(r[f"{slm}/collab"]) for r in rows])
    failed = np.array([r[f"{slm}/collab"]["failure"] is not None for r in rows])
    fit_conf = (
        np.array([confidence(r[f"{slm}/collab"]) for r in calibration]) if calibration else None
    )
    out.append(mixed("cascade (mean log-prob)", failed | escalate(conf, fit_conf, share)))
    for run, name in (("draft_verify", "draft_verify"), ("read", "verify_draft (LLM reads)")):
        if f"{slm}/{run}" not in ok:
            continue
        wrote = np.array([r[f"{slm}/{run}"]["llm_written"] for r in rows])
        got = np.array([r[f"{slm}/{run}"]["llm_read"] for r in rows])
        out.append(Result(name, float(ok[f"{slm}/{run}"].mean()), float((wrote > 0).mean()),
                          int(wrote.sum()), int(got.sum())))  # fmt: skip
    if f"{slm}/read" in ok and f"{slm}/read" in ok_calibration:
        margin = fitted_margin(calibration, slm, llm, ok_calibration)
        up = read_gaps(rows, slm) > margin
        got = sum(r[f"{slm}/read"]["llm_read"] for r in rows)
        out.append(Result(f"verify_draft (LLM reads, within {margin:.2f} nats)",
                          float(np.where(up, llm_ok, slm_ok).mean()), float(up.mean()),
                          int(written[up].sum()), int(got)))  # fmt: skip
    # speculative decoding is lossless: its calls are the LLM's, every token the LLM's
    out.append(Result("speculative (= llm_only's calls)", float(llm_ok.mean()), 1.0,
                      int(written.sum()), None))  # fmt: skip
    return out


def plot(by_category: dict[str, dict[str, list[Result]]], path: Path) -> None:
    """Accuracy against the share of items the LLM writes for, one panel per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(by_category), figsize=(6 * len(by_category), 4.5),
                             squeeze=False)  # fmt: skip
    markers = "osD^v*Px"
    for ax, (category, by_slm) in zip(axes[0], by_category.items(), strict=True):
        for slm, found in by_slm.items():
            for marker, result in zip(markers, found, strict=False):
                ax.scatter([result.share], [result.accuracy], marker=marker,
                           label=f"{result.strategy} ({slm})")  # fmt: skip
        ax.axvline(0.35, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("items the LLM writes for (share)")
        ax.set_ylabel("accuracy (AST)")
        ax.set_title(f"BFCL {category}")
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
