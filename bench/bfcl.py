"""Tool-calling accuracy on the Berkeley Function Calling Leaderboard (BFCL), AST-checked.

For each SLM (SmolLM2-135M, Qwen2.5-Coder-0.5B): collab tool calling (grammar-
constrained, validated, repaired once, optional arguments nobody gave dropped)
against two ways of prompting the same model without a constraint: the same tool
list in the prompt with free decoding and JSON parsed from the reply ("plain"),
and the leaderboard's own prompt mode (its system prompt, calls written as
Python, its own decoder: "BFCL prompt"). The LLM (Qwen2.5-Coder-1.5B) through
collab alone; and the SLM with LLM fallback, where a call is escalated when it is
invalid after repair or its confidence is in the lowest 30% (threshold fitted on
the other half of the items, 2-fold); a second table shows that for each of
collab's confidence signals. A third table has every strategy of the README over
the pair (route, cascade, draft_verify, the LLM reading each SLM call, speculative),
with LLM tokens read and written and thresholds fitted on simple_python only, and
``bfcl.png`` plots it. Categories: simple_python, multiple, parallel,
parallel_multiple, irrelevance (a correct answer there calls nothing). In simple_python and multiple
the question asks for one call, so both collab (``parallel=False``) and the plain
prompt are told one call; parallel and irrelevance allow a list. Results are
cached per item, so an interrupted run resumes, and a row from an older setup
is completed where it lacks something.

    python bench/bfcl.py [--limit 20] [--categories multiple,parallel_multiple]
        [--slms qwen2.5-coder-0.5b] [--runs collab,read,draft_verify] [--report]

Needs ``pip install --no-deps bfcl-eval`` (its data and AST checker only; see
``make bench``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from langchain_core.messages import HumanMessage, SystemMessage
from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench.bfcl_strategies as strategies
import collab
from collab.chat_model import CollabChatModel
from collab.messages import tool_prompt
from collab.models.grammar import GrammarGate
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.tool_format import to_openai_tools
from collab.policy import Policy
from collab.tools import ToolCaller, ToolPlan, make_tool

console = Console(width=130)
SLMS = ("smollm2-135m", "qwen2.5-coder-0.5b")
LLM = "qwen2.5-coder-1.5b"
CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")
CALIBRATION = "simple_python"  # where thresholds are fitted for the other categories
LLM_SHARE = 0.3
CACHE = Path(__file__).parent / "results" / "bfcl.jsonl"
PLAIN = (
    "\nReply only with a JSON list of the calls to make, each "
    '{"name": <function name>, "arguments": {...}}, or [] if no function applies.'
)
PLAIN_ONE = (
    "\nReply only with the JSON of the one call to make, "
    '{"name": <function name>, "arguments": {...}}, or [] if no function applies.'
)
ONE_CALL = ("simple_python", "multiple")  # categories whose questions ask for one call


def setup(category: str) -> str:
    return "one call" if category in ONE_CALL else "list"


def stand_in(module: str, **names: Any) -> None:
    """Import ``module`` as a stand-in holding ``names`` (bfcl-eval is installed without deps)."""
    sys.modules[module] = types.ModuleType(module)
    for name, value in names.items():
        setattr(sys.modules[module], name, value)


def ast_checker() -> Callable[..., dict[str, Any]]:
    """BFCL's own checker; its one heavy import (every provider SDK) is stood in for."""

    class _Config:
        underscore_to_dot = False  # collab keeps dotted names as they are

    stand_in("bfcl_eval.constants.model_config", MODEL_CONFIG_MAPPING=_AnyKey(_Config()))
    # BFCL's prompt-mode helpers import parsers for Java and JavaScript (tree-sitter),
    # which Python categories never use.
    stand_in("bfcl_eval.model_handler.parser.java_parser", parse_java_function_call=None)
    stand_in("bfcl_eval.model_handler.parser.js_parser", parse_javascript_function_call=None)
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker as check

    return check  # type: ignore[no-any-return]


class _AnyKey(dict[str, Any]):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def __missing__(self, key: str) -> Any:
        return self.value


def load(category: str, limit: int) -> list[dict[str, Any]]:
    data = resources.files("bfcl_eval") / "data"
    items = [json.loads(line) for line in (data / f"BFCL_v4_{category}.json").open()]
    answers_file = data / "possible_answer" / f"BFCL_v4_{category}.json"
    if answers_file.is_file():
        answers = {a["id"]: a["ground_truth"] for a in map(json.loads, answers_file.open())}
        for item in items:
            item["answer"] = answers[item["id"]]
    step = max(1, len(items) // limit)  # spread over the category, deterministic
    return items[::step][:limit]


def json_schema(bfcl: Any) -> Any:
    """BFCL's parameter types (dict, float, tuple, any) as JSON schema."""
    if isinstance(bfcl, list):
        return [json_schema(x) for x in bfcl]
    if not isinstance(bfcl, dict):
        return bfcl
    out = {
        k: {name: json_schema(p) for name, p in v.items()}  # names, not schema keywords
        if k == "properties" and isinstance(v, dict)
        else json_schema(v)
        for k, v in bfcl.items()
    }
    kind = out.get("type")
    if not isinstance(kind, str):
        return out
    mapped = {"dict": "object", "float": "number", "tuple": "array"}.get(kind, kind)
    if mapped == "any":
        out.pop("type")
    elif mapped:
        out["type"] = mapped
    return out


def tools_of(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": json_schema(f) | {"name": f["name"]}}
        for f in item["function"]
    ]


def question_of(item: dict[str, Any]) -> list[Any]:
    return [HumanMessage(m["content"]) for m in item["question"][0] if m["role"] == "user"]


def as_bfcl(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{c["name"]: c["args"]} for c in calls]


def plain_calls(text: str) -> list[dict[str, Any]] | None:
    """Calls parsed from a free reply (the first JSON value in it); None if none parses."""
    decoder = json.JSONDecoder()
    for start, ch in enumerate(text):
        if ch not in "[{":
            continue
        try:
            value, _ = decoder.raw_decode(text[start:])
        except ValueError:
            continue
        found = value if isinstance(value, list) else [value]
        try:
            return [
                {"name": str(c["name"]), "args": dict(c.get("arguments", c.get("parameters", {})))}
                for c in found
            ]
        except (TypeError, KeyError, AttributeError, ValueError):
            return None
    return None


@dataclass
class Outcome:
    calls: list[dict[str, Any]] | None  # None: nothing parsed
    failure: str | None = None
    scores: dict[str, Any] | None = None  # collab's tool_call_logprob (confidence signals)
    dropped: list[str] | None = None  # optional arguments collab left out as ungrounded
    llm_read: int = 0  # tokens the LLM read
    llm_written: int = 0  # tokens the LLM wrote
    read_gap: float | None = None  # nats the LLM found the SLM's call below its own, at most


def outcome(plan: ToolPlan) -> Outcome:
    """A plan's calls, and what the LLM read and wrote for it."""
    scored = plan.message.response_metadata.get("tool_call_logprob") or {}
    calls = [{"name": c["name"], "args": c["args"]} for c in plan.calls]
    mine = [c for c in plan.trace.calls if c.model == LLM]
    read = plan.trace.extra.get("llm_read") or {}
    return Outcome(
        calls, plan.failure, scored, plan.dropped,
        sum(c.input_tokens for c in mine), sum(c.output_tokens for c in mine), read.get("gap"),
    )  # fmt: skip


def run_collab(model: LlamaCppChatModel, item: dict[str, Any], parallel: bool) -> Outcome:
    tools = [make_tool(t) for t in tools_of(item)]
    # The LLM's calls are taken as they come, as when a call is escalated to it.
    grounding = model.model != LLM
    caller = ToolCaller(
        model, tools, parallel=parallel, min_logprob=float("-inf"), ground_optional=grounding
    )
    return outcome(caller.plan(question_of(item)))


def run_read(
    slm: LlamaCppChatModel, llm: LlamaCppChatModel, item: dict[str, Any], parallel: bool
) -> Outcome:
    """verify_draft for tool calls, as the tool caller does it by default when the LLM can
    read: the SLM calls; the LLM reads the call and writes only where it would not have
    written it (or where the SLM's call stays invalid after repair)."""
    tools = [make_tool(t) for t in tools_of(item)]
    caller = ToolCaller(slm, tools, llm=llm, parallel=parallel, llm_reads=True)
    return outcome(caller.plan(question_of(item)))


def run_draft_verify(
    slm: LlamaCppChatModel, llm: LlamaCppChatModel, item: dict[str, Any], parallel: bool
) -> Outcome:
    """draft_verify for tool calls: the LLM reviews the SLM's call, and calls itself when
    it rejects it."""
    pair = CollabChatModel(slm=slm, llm=llm, policy=Policy(default="draft_verify", privacy="allow"))
    tools = [make_tool(t) for t in tools_of(item)]
    return outcome(ToolCaller(pair, tools, parallel=parallel).plan(question_of(item)))


def run_masked(model: LlamaCppChatModel, item: dict[str, Any], parallel: bool) -> Outcome:
    """collab's calls decoded as llama-cpp-python's sampler does it: the grammar masks the
    whole vocabulary at every step (the same greedy calls, at the old cost)."""
    allows = GrammarGate.allows
    GrammarGate.allows = lambda self, token: False  # type: ignore[method-assign]
    try:
        return run_collab(model, item, parallel)
    finally:
        GrammarGate.allows = allows  # type: ignore[method-assign]


def run_plain(model: LlamaCppChatModel, item: dict[str, Any], parallel: bool) -> Outcome:
    system = tool_prompt(to_openai_tools(tools_of(item))) + (PLAIN if parallel else PLAIN_ONE)
    reply = model.invoke([SystemMessage(system), *question_of(item)])
    return Outcome(plain_calls(str(reply.content)))


def run_bfcl_prompt(model: LlamaCppChatModel, item: dict[str, Any], parallel: bool) -> Outcome:
    """The leaderboard's prompt mode: its system prompt, Python calls, its decoder."""
    from bfcl_eval.model_handler.utils import (
        default_decode_ast_prompting,
        system_prompt_pre_processing_chat_model,
    )

    asked = [m for m in item["question"][0] if m["role"] == "user"]
    chat = system_prompt_pre_processing_chat_model(asked, item["function"], item["id"])
    reply = model.invoke([(m["role"], m["content"]) for m in chat])
    try:
        decoded = default_decode_ast_prompting(str(reply.content))
    except Exception:  # the leaderboard counts a reply its decoder rejects as wrong
        return Outcome(None)
    calls = [{"name": name, "args": args} for call in decoded for name, args in call.items()]
    return Outcome(calls)


def correct(
    check: Callable[..., dict[str, Any]], category: str, item: dict[str, Any], calls: Any
) -> bool:
    if category == "irrelevance":
        return not calls
    if not calls:
        return False
    from bfcl_eval.constants.enums import Language

    try:
        result = check(
            item["function"], as_bfcl(calls), item["answer"], Language.PYTHON, category, "collab"
        )
    except Exception:  # the checker trips on some malformed outputs: they are wrong
        return False
    return bool(result["valid"])


# collab's code as it is now: rows measured under other code can be measured anew (--again).
SOURCE = hashlib.sha256(
    b"".join(p.read_bytes() for p in sorted(Path(collab.__file__).parent.rglob("*.py")))
).hexdigest()[:12]
RUNS = {"collab": run_collab, "masked": run_masked, "plain": run_plain, "bfcl": run_bfcl_prompt}
# runs of the SLM with the LLM: strategies over the pair
PAIR_RUNS = {"read": run_read, "draft_verify": run_draft_verify}


@dataclass(frozen=True)
class Selection:
    """Which SLMs and runs to measure (the LLM alone is always measured)."""

    slms: tuple[str, ...] = SLMS
    runs: tuple[str, ...] = (*RUNS, *PAIR_RUNS)

    def wanted(self) -> list[str]:
        return [f"{LLM}/collab", *(f"{slm}/{run}" for slm in self.slms for run in self.runs)]


def missing(
    row: dict[str, Any], selection: Selection, again: frozenset[str] = frozenset()
) -> list[str]:
    """What ``row`` lacks, and the runs in ``again`` (measured anew after a change)."""
    keys = selection.wanted()
    redo = {k for k in keys if k.split("/")[1] in again and row.get(f"{k}/source") != SOURCE}
    # runs measured before what the LLM wrote, and how far it disagreed, were kept
    redo |= {k for k in keys if k.endswith("/read") and "read_gap" not in row.get(k, {"-": 0})}
    redo |= {f"{LLM}/collab"} if "llm_written" not in row.get(f"{LLM}/collab", {}) else set()
    lacks = [k for k in keys if k not in row or k in redo]
    return lacks + [
        f"{name}/prompt" for name in selection.slms if f"{name}/prompt/seconds" not in row
    ]


def measure(
    models: Callable[[str], LlamaCppChatModel],
    category: str,
    item: dict[str, Any],
    row: dict[str, Any],
    selection: Selection,
    again: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``row`` with what it lacks measured (a cached row keeps what it has)."""
    row = {**row, "id": item["id"], "category": category, "setup": setup(category)}
    parallel = setup(category) == "list"
    for key in missing(row, selection, again):
        name, run = key.split("/")
        if run == "prompt":
            row[f"{name}/prompt/seconds"] = prompt_seconds(models(name), item)
            continue
        if run not in PAIR_RUNS:
            models(name).logits([], 0)  # an empty KV cache: no run reads the prompt another ran
        start = time.perf_counter()
        if run in PAIR_RUNS:  # the caches stay warm: these runs' seconds are not compared
            done = PAIR_RUNS[run](models(name), models(LLM), item, parallel)
        else:
            done = RUNS[run](models(name), item, parallel)
        row[key] = done.__dict__
        row[f"{key}/seconds"] = round(time.perf_counter() - start, 2)
        row[f"{key}/source"] = SOURCE  # so that a resumed run with --again does not redo it
    return row


def prompt_seconds(model: LlamaCppChatModel, item: dict[str, Any]) -> float:
    """Seconds the model takes to read the tool-call prompt of ``item`` (question and tool
    list) from an empty KV cache: the part of an item no decoding speed-up can remove."""
    tokens = model.engine.encode_prompt(model.render(question_of(item), tools_of(item)))
    model.logits([], 0)
    start = time.perf_counter()
    with model.engine.lock:
        model.engine.logits(tokens, len(tokens) - 1)
    return round(time.perf_counter() - start, 2)


SIGNALS = ("mean", "min", "name", "mean+name")  # collab's confidence scores, alone or summed
SIGNAL = "mean"  # the one that decides the escalations in the main table
FALLBACK_RULE = (
    f"invalid calls, and those with a {SIGNAL} log-probability below the {LLM_SHARE:.0%} "
    f"quantile on {CALIBRATION} (on {CALIBRATION} itself: on the other half, 2-fold), go to "
    "the LLM."
)
PLOT = CACHE.with_suffix(".png")
Ok = dict[str, npt.NDArray[np.bool_]]


def confidence(outcome: dict[str, Any], signal: str = SIGNAL) -> float:
    scores = outcome["scores"] or {}
    return sum(scores.get(key, 0.0) for key in signal.split("+"))


def fallback(
    rows: list[dict[str, Any]], fit: list[dict[str, Any]], slm: str, ok: Ok, signal: str = SIGNAL
) -> tuple[float, float]:
    """Accuracy and LLM share when invalid and unsure calls go to the LLM (see FALLBACK_RULE)."""
    conf = np.array([confidence(r[f"{slm}/collab"], signal) for r in rows])
    fitted = np.array([confidence(r[f"{slm}/collab"], signal) for r in fit]) if fit else None
    failed = np.array([r[f"{slm}/collab"]["failure"] is not None for r in rows])
    up = failed | strategies.escalate(conf, fitted, LLM_SHARE)
    good = np.where(up, ok[f"{LLM}/collab"], ok[f"{slm}/collab"])
    return float(good.mean()), float(up.mean())


def ceiling(slm: str, ok: Ok) -> tuple[float, float]:
    """What a perfect signal reaches: exactly the SLM's wrong calls that the LLM gets right go."""
    slm_ok, llm_ok = ok[f"{slm}/collab"], ok[f"{LLM}/collab"]
    return float((slm_ok | llm_ok).mean()), float((~slm_ok & llm_ok).mean())


def seconds_table(rows: list[dict[str, Any]], selection: Selection) -> Table:
    """Median seconds per item of each configuration; collab against the masked grammar."""
    table = Table(title="seconds per item (median over the items above)")
    columns = ("model", "collab", "masked grammar (before)", "speed-up", *RUNS_OTHER,
               "reading the prompt", "speed-up if decoding were free")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for name in (*selection.slms, LLM):
        median = {
            run: float(np.median(times)) if (times := [r[f"{name}/{run}/seconds"] for r in rows
                                                       if f"{name}/{run}/seconds" in r]) else None
            for run in (*RUNS, "prompt")
        }  # fmt: skip
        cells = {run: f"{v:.1f}" if v is not None else "-" for run, v in median.items()}
        slow = median["masked"]
        ratio = {
            run: f"{slow / fast:.1f}x" if (fast := median[run]) and slow else "-"
            for run in ("collab", "prompt")
        }
        table.add_row(name, cells["collab"], cells["masked"], ratio["collab"], cells["plain"],
                      cells["bfcl"], cells["prompt"], ratio["prompt"])  # fmt: skip
    return table


RUNS_OTHER = ("plain", "BFCL prompt")


def scored(rows: list[dict[str, Any]], category: str, selection: Selection) -> Ok:
    """Which runs' calls are right, for the runs every row of ``rows`` has."""
    check = ast_checker()
    items = {i["id"]: i for i in load(category, 10**6)}
    return {
        key: np.array([correct(check, category, items[r["id"]], r[key]["calls"]) for r in rows])
        for key in selection.wanted()
        if rows and all(key in r for r in rows)
    }


@functools.cache
def questions(category: str) -> dict[str, str]:
    return {
        i["id"]: " ".join(str(m.content) for m in question_of(i)) for i in load(category, 10**6)
    }


def question(row: dict[str, Any]) -> str:
    return questions(row["category"])[row["id"]]


def report(rows: list[dict[str, Any]], categories: list[str], selection: Selection) -> None:
    table = Table(title=f"BFCL (AST-checked), {len(rows)} items; accuracy (share parsed)")
    for column in ("category", "SLM", "n"):
        table.add_column(column, justify="right" if column == "n" else "left")
    for column in ("plain", "BFCL prompt", "collab", "collab, masked grammar",
                   "+LLM fallback (LLM share)", "LLM only"):  # fmt: skip
        table.add_column(column, justify="right")
    signals = Table(
        title="+LLM fallback by the confidence signal that escalates: accuracy (LLM share)"
    )
    for column in ("category", "SLM", *SIGNALS, "perfect signal"):
        signals.add_column(column, justify="left" if column in ("category", "SLM") else "right")
    calibration = [r for r in rows if r["category"] == CALIBRATION]
    ok_calibration = scored(calibration, CALIBRATION, selection)
    found: dict[str, dict[str, list[strategies.Result]]] = {}
    for category in categories:
        mine = [r for r in rows if r["category"] == category]
        ok = scored(mine, category, selection)
        if f"{LLM}/collab" not in ok:
            continue
        fit = calibration if category != CALIBRATION else []
        llm_only = f"{ok[f'{LLM}/collab'].mean():.0%}"
        for slm in selection.slms:
            if f"{slm}/collab" not in ok:
                continue
            cells = [category, slm, str(len(mine))]
            for run in ("plain", "bfcl"):
                parsed = np.mean([r.get(f"{slm}/{run}", {}).get("calls") is not None for r in mine])
                have = f"{slm}/{run}" in ok
                cells.append(f"{ok[f'{slm}/{run}'].mean():.0%} ({parsed:.0%})" if have else "-")
            acc, share = fallback(mine, fit, slm, ok)
            cells += [f"{ok[k].mean():.0%}" if (k := f"{slm}/{run}") in ok else "-"
                      for run in ("collab", "masked")]  # fmt: skip
            cells.append(f"{acc:.0%} ({share:.0%})")
            table.add_row(*cells, llm_only)
            by_signal = [fallback(mine, fit, slm, ok, signal) for signal in SIGNALS]
            by_signal.append(ceiling(slm, ok))
            signals.add_row(category, slm, *[f"{a:.0%} ({s:.0%})" for a, s in by_signal])
            if category != CALIBRATION:
                found.setdefault(category, {})[slm] = strategies.results(
                    mine, calibration, slm, LLM, ok, ok_calibration, LLM_SHARE, question,
                    confidence,
                )  # fmt: skip
        table.add_section()
    console.print(table)
    console.print(
        "plain: the tool list in the prompt, free decoding, a JSON call parsed from the reply; "
        "BFCL prompt: the leaderboard's prompt mode (its system prompt, Python calls, its "
        "decoder); collab: decoded under a grammar, so every call parses. +LLM fallback: "
        f"{FALLBACK_RULE} LLM only: {LLM} through collab. {' and '.join(ONE_CALL)} ask for one "
        "call (collab parallel=False, plain told one call); the others allow a list."
    )
    console.print(signals)
    console.print(strategies_table(found))
    if found:
        strategies.plot(found, PLOT)
        console.print(f"plot: {PLOT}")
    console.print(seconds_table(rows, selection))
    console.print(
        "mean: mean token log-probability of the call under the free SLM; min: its least "
        "likely token; name: log-probability of the tool chosen among those offered; "
        "mean+name: their sum; perfect signal: the SLM's wrong calls that the LLM gets right, "
        "and only those, go to the LLM (the most any signal can reach)."
    )


def strategies_table(found: dict[str, dict[str, list[strategies.Result]]]) -> Table:
    table = Table(
        title=f"collab's strategies on BFCL, thresholds fitted on {CALIBRATION} only "
        f"(route and cascade escalate at its {LLM_SHARE:.0%} quantile)"
    )
    for column in ("category", "SLM", "strategy", "accuracy", "items the LLM writes for",
                   "LLM tokens written", "LLM tokens read"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("category", "SLM", "strategy")
                         else "right")  # fmt: skip
    for category, by_slm in found.items():
        for slm, results in by_slm.items():
            for r in results:
                table.add_row(category, slm, r.strategy, f"{r.accuracy:.0%}", f"{r.share:.0%}",
                              str(r.written), "-" if r.read is None else str(r.read))  # fmt: skip
            table.add_section()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="items per category")
    parser.add_argument("--categories", default=",".join(CATEGORIES))
    parser.add_argument(
        "--calibration", type=int, default=20,
        help=f"{CALIBRATION} items that fit the thresholds when it is not among --categories",
    )  # fmt: skip
    parser.add_argument("--slms", default=",".join(SLMS), help="the SLMs to measure")
    parser.add_argument(
        "--runs", default=",".join((*RUNS, *PAIR_RUNS)), help="the SLMs' runs to measure"
    )
    parser.add_argument("--fresh", action="store_true", help="ignore cached results")
    parser.add_argument("--report", action="store_true", help="only report what is cached")
    parser.add_argument(
        "--again",
        default="",
        help="runs (collab, plain, bfcl, ...) to measure anew where collab's code has changed "
        "since the cached row was measured",
    )
    args = parser.parse_args()
    categories = args.categories.split(",")
    selection = Selection(tuple(args.slms.split(",")), tuple(args.runs.split(",")))
    again = frozenset(filter(None, args.again.split(",")))
    if (again | set(selection.runs)) - set(RUNS) - set(PAIR_RUNS):
        parser.error(f"--runs and --again take runs from {sorted((*RUNS, *PAIR_RUNS))}")
    if set(selection.slms) - set(SLMS):
        parser.error(f"--slms takes SLMs from {SLMS}")
    unknown = set(categories) - set(CATEGORIES)
    if unknown:
        parser.error(f"unknown categories {sorted(unknown)}; choose from {CATEGORIES}")
    ast_checker()  # fail now, not after an hour, if bfcl-eval is missing

    CACHE.parent.mkdir(exist_ok=True)
    done = {}
    if CACHE.exists() and not args.fresh:
        rows = map(json.loads, CACHE.open())
        done = {
            (r["category"], r["id"]): r
            for r in rows
            if r.get("setup", "list") == setup(r["category"])  # cached under today's setup
        }
    # thresholds for the other categories are fitted on CALIBRATION's items: measured too
    calibrating = Selection(
        selection.slms, tuple(r for r in ("collab", "read") if r in selection.runs)
    )
    items = [(c, i, selection) for c in categories for i in load(c, args.limit)]
    if CALIBRATION not in categories:
        items += [(CALIBRATION, i, calibrating) for i in load(CALIBRATION, args.calibration)]
    todo = [t for t in items if missing(done.get((t[0], t[1]["id"]), {}), t[2], again)]
    if todo and not args.report:

        @functools.cache
        def models(name: str) -> LlamaCppChatModel:
            return LlamaCppChatModel(model=name, temperature=0.0, max_tokens=192, n_ctx=4096)

        with CACHE.open("a") as out:  # the last row of an item is the one that counts
            for category, item, chosen in track(todo, description="BFCL", console=console):
                cached = done.get((category, item["id"]), {})
                row = measure(models, category, item, cached, chosen, again)
                out.write(json.dumps(row) + "\n")
                out.flush()
                done[category, item["id"]] = row
    found = [row for c, i, chosen in items
             if (row := done.get((c, i["id"]))) and not missing(row, chosen)]  # fmt: skip
    report(found, categories, selection)  # in the order of the data


if __name__ == "__main__":
    main()
