"""Agents on multi-step work: the pair against the SLM alone and the LLM alone.

Four ways to run an agent over the same tools, each task in a fresh agent:

- ``slm``: LangChain's ``create_agent`` over the SLM (Qwen2.5-Coder-0.5B) alone;
- ``llm``: the same over the LLM (Qwen2.5-Coder-1.5B, in-process here) alone;
- ``llm_only``: the same over ``CollabChatModel`` with the policy ``llm_only``: the
  LLM alone with collab's tool-loop sense (a call already answered is not made
  again; the LLM answers from its result). LLM tokens are counted against it.
- ``graph``: collab's agent graph (``build_graph``) over the pair;
- ``agent``: ``create_agent`` over the LLM with ``CollabMiddleware(pair)``, which
  sends each model call to the pair (cascade: the SLM answers or calls, the LLM
  when the SLM is unsure of it, and on a repeated call).

Suites: ``own`` (``bench/agent_suite.py``: 30 tasks with real tools, one to three
calls each, checked on the last answer) and ``bfcl`` (BFCL's ``multi_turn_base``:
its own executable tool classes and its own multi-turn checker, which compares
the classes' state and the calls' results with its ground truth, turn by turn).
Reported per suite and way: task success, model turns per task, LLM calls, and
LLM tokens (prompt and output) as a share of the LLM alone's.

    python bench/agents.py [--suites own,bfcl] [--ways slm,llm,graph,agent] [--items 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.agent_suite import TOOLS, Task, succeeded, tasks
from bench.bfcl import json_schema, stand_in
from collab import CollabChatModel, Policy
from collab.agents import build_graph
from collab.messages import text_content
from collab.middleware import CollabMiddleware
from collab.models.llamacpp import LlamaCppChatModel
from collab.trace import TRACE_KEY, Trace

console = Console(width=120)
SLM, LLM = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
MAX_STEPS = 6  # model calls per user turn before the run counts as stuck
WAYS = ("slm", "llm", "llm_only", "graph", "agent")


@dataclass
class Run:
    """What one way did on one task."""

    answers: list[str] = field(default_factory=list)  # the last answer of each turn
    steps: list[list[list[dict[str, Any]]]] = field(default_factory=list)  # turn > step > calls
    traces: list[Trace] = field(default_factory=list)
    error: str = ""

    def llm_calls(self) -> list[Any]:
        return [c for t in self.traces for c in t.calls if c.model == LLM]

    def llm_tokens(self) -> int:
        return sum(c.input_tokens + c.output_tokens for c in self.llm_calls())

    def model_turns(self) -> int:
        return sum(len(t.calls) > 0 for t in self.traces)


Runner = Callable[[list[str], Sequence[BaseTool]], Run]


def _traces(messages: Sequence[BaseMessage]) -> list[Trace]:
    return [
        Trace.from_metadata(m.response_metadata)
        for m in messages
        if isinstance(m, AIMessage) and TRACE_KEY in m.response_metadata
    ]


def agent_runner(model: Any, middleware: Sequence[Any] = ()) -> Runner:
    """``create_agent`` over ``model``; one conversation over the turns. A run stuck in
    a loop keeps what it did (its model calls count) and fails."""

    def run(turns: list[str], tools: Sequence[BaseTool]) -> Run:
        agent = create_agent(model=model, tools=list(tools), middleware=list(middleware))
        out, history = Run(), []
        for turn in turns:
            history.append(HumanMessage(turn))
            new: list[AIMessage] = []
            try:
                for update in agent.stream(
                    {"messages": history}, {"recursion_limit": 2 * MAX_STEPS + 1},
                    stream_mode="updates",
                ):  # fmt: skip
                    for step in update.values():
                        for message in (step or {}).get("messages", []):
                            history.append(message)
                            new += [message] if isinstance(message, AIMessage) else []
            except GraphRecursionError:
                out.error = f"no answer within {MAX_STEPS} model calls"
            out.steps.append([list(m.tool_calls) for m in new if m.tool_calls])
            out.answers.append(text_content(new[-1].content) if new else "")
            out.traces += _traces(new)
            if out.error:
                break
        return out

    return run


def graph_runner(slm: Any, llm: Any, policy: Policy) -> Runner:
    """collab's agent graph over the pair; one thread over the turns."""

    def run(turns: list[str], tools: Sequence[BaseTool]) -> Run:
        graph = build_graph(slm, llm, tools=list(tools), policy=policy,
                            checkpointer=InMemorySaver(), max_tool_rounds=MAX_STEPS)  # fmt: skip
        config = {"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": 60}
        out, seen, traced = Run(), 0, 0
        for turn in turns:
            state = graph.invoke({"messages": [HumanMessage(turn)]}, config)
            new = [m for m in state["messages"][seen:] if isinstance(m, AIMessage)]
            seen = len(state["messages"])
            out.steps.append([list(m.tool_calls) for m in new if m.tool_calls])
            out.answers.append(text_content(new[-1].content) if new else "")
            out.traces += [Trace.model_validate(t) for t in state.get("trace", [])[traced:]]
            traced = len(state.get("trace", []))
        return out

    return run


# ---- BFCL multi_turn_base ---------------------------------------------------------------


def bfcl_items(limit: int) -> list[dict[str, Any]]:
    data = resources.files("bfcl_eval") / "data"
    items = [json.loads(line) for line in (data / "BFCL_v4_multi_turn_base.json").open()]
    answers = {
        a["id"]: a["ground_truth"]
        for a in map(json.loads, (data / "possible_answer/BFCL_v4_multi_turn_base.json").open())
    }
    for item in items:
        item["answer"] = answers[item["id"]]
    step = max(1, len(items) // limit)  # spread over the category, deterministic
    return items[::step][:limit]


def _bfcl_modules() -> tuple[Any, Any, dict[str, str]]:
    stand_in("bfcl_eval.constants.model_config", MODEL_CONFIG_MAPPING={})
    from bfcl_eval.constants.executable_backend_config import MULTI_TURN_FUNC_DOC_FILE_MAPPING
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import (
        execute_multi_turn_func_call,
    )

    return multi_turn_checker, execute_multi_turn_func_call, MULTI_TURN_FUNC_DOC_FILE_MAPPING


def as_call(call: dict[str, Any]) -> str:
    """A tool call as BFCL writes one: ``mv(source='a', destination='b')``."""
    args = ", ".join(f"{k}={v!r}" for k, v in call["args"].items())
    return f"{call['name']}({args})"


def bfcl_tools(item: dict[str, Any], owner: str) -> list[BaseTool]:
    """The item's functions as LangChain tools running on BFCL's classes; ``owner``
    keeps each run's instances apart (BFCL keys them by model name and item)."""
    _, execute, docs = _bfcl_modules()
    folder = resources.files("bfcl_eval") / "data" / "multi_turn_func_doc"
    excluded = set(item.get("excluded_function") or [])
    out: list[BaseTool] = []
    for cls in item["involved_classes"]:
        for doc in map(json.loads, (folder / docs[cls]).open()):
            if doc["name"] in excluded:
                continue

            def run(_name: str = doc["name"], **kwargs: Any) -> str:
                results, _ = execute(
                    func_call_list=[as_call({"name": _name, "args": kwargs})],
                    initial_config=item["initial_config"],
                    involved_classes=item["involved_classes"],
                    model_name=owner,
                    test_entry_id=item["id"],
                )
                return str(results[0])

            out.append(StructuredTool(
                name=doc["name"], description=doc["description"][:1024],
                args_schema=json_schema(doc["parameters"]), func=run,
            ))  # fmt: skip
    return out


def bfcl_check(item: dict[str, Any], run: Run, owner: str) -> bool:
    checker, _, _ = _bfcl_modules()
    decoded = [[[as_call(c) for c in step] for step in turn] for turn in run.steps]
    decoded += [[] for _ in range(len(item["answer"]) - len(decoded))]
    try:
        result = checker(decoded, item["answer"], item, "multi_turn_base", owner + "_check")
    except Exception as exc:  # the checker's own failures count as a miss
        console.print(f"[dim]{item['id']}: checker failed: {exc}[/]")
        return False
    return bool(result.get("valid"))


# ---- the run ----------------------------------------------------------------------------


def ways(names: Sequence[str], n_ctx: int) -> dict[str, Runner]:
    slm = LlamaCppChatModel(model=SLM, temperature=0.0, max_tokens=160, n_ctx=n_ctx)
    llm = LlamaCppChatModel(model=LLM, temperature=0.0, max_tokens=160, n_ctx=n_ctx)
    policy = Policy(default="cascade")
    pair = CollabChatModel(slm=slm, llm=llm, policy=policy)
    built: dict[str, Callable[[], Runner]] = {
        "slm": lambda: agent_runner(slm),
        "llm": lambda: agent_runner(llm),
        "llm_only": lambda: agent_runner(
            CollabChatModel(slm=slm, llm=llm, policy=Policy(default="llm_only"))
        ),
        "graph": lambda: graph_runner(slm, llm, policy),
        "agent": lambda: agent_runner(llm, [CollabMiddleware(pair)]),
    }
    return {name: built[name]() for name in names}


def measure(
    suite: str, runners: dict[str, Runner], items: list[Any], progress: Progress
) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
    for name, runner in runners.items():
        bar = progress.add_task(f"{suite} {name}", total=len(items))
        for i, item in enumerate(items):
            start = time.perf_counter()
            owner = f"collab_{name}_{i}_{uuid.uuid4().hex[:6]}"
            if suite == "own":
                task: Task = item
                run = runner(task.turns, TOOLS)
                ok = not run.error and bool(run.answers) and succeeded(task, run.answers[-1])
            else:
                turns = [m["content"] for turn in item["question"] for m in turn
                         if m["role"] == "user"]  # fmt: skip
                run = runner(turns, bfcl_tools(item, owner))
                ok = not run.error and bfcl_check(item, run, owner)
            rows[name].append({
                "ok": ok, "turns": run.model_turns(), "llm_calls": len(run.llm_calls()),
                "llm_tokens": run.llm_tokens(), "seconds": time.perf_counter() - start,
            })  # fmt: skip
            row = rows[name][-1]
            progress.console.print(
                f"[dim]{suite} {name} {i}: {'ok' if ok else 'failed'}, "
                f"{row['llm_tokens']} LLM tokens, {row['seconds']:.0f} s[/]"
            )
            progress.advance(bar)
    return rows


def report(suite: str, n: int, rows: dict[str, list[dict[str, Any]]]) -> None:
    table = Table(title=f"{suite}: {n} tasks")
    for column in ("way", "success", "model turns / task", "LLM calls", "LLM tokens",
                   "LLM tokens vs llm_only", "s / task"):  # fmt: skip
        table.add_column(column, justify="left" if column == "way" else "right")
    base = sum(r["llm_tokens"] for r in rows.get("llm_only", rows.get("llm", []))) or None
    for name, got in rows.items():
        tokens = sum(r["llm_tokens"] for r in got)
        table.add_row(
            name,
            f"{sum(r['ok'] for r in got)}/{len(got)}",
            f"{sum(r['turns'] for r in got) / max(1, len(got)):.1f}",
            str(sum(r["llm_calls"] for r in got)),
            str(tokens),
            f"{tokens / base:.0%}" if base else "-",
            f"{sum(r['seconds'] for r in got) / max(1, len(got)):.1f}",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="own,bfcl")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--items", type=int, default=50, help="BFCL items")
    parser.add_argument("--tasks", type=int, default=30, help="tasks of the own suite")
    args = parser.parse_args()
    names = args.ways.split(",")
    for suite in args.suites.split(","):
        items: list[Any] = (
            tasks()[:: max(1, 30 // args.tasks)][: args.tasks]
            if suite == "own"
            else bfcl_items(args.items)
        )
        runners = ways(names, n_ctx=4096 if suite == "own" else 16384)
        with Progress(console=console) as progress:
            rows = measure(suite, runners, items, progress)
        report(suite, len(items), rows)


if __name__ == "__main__":
    main()
