"""Two local models on one machine's cores: the SLM in-process and the stand-in LLM server.

Each generates alone, then both generate at the same time; a model's speed
together, over its speed alone, is what it keeps (two models sharing the cores
fairly keep 0.5x each). Measured side by side in one run, each setting in its own
process with its own server: every model taking every core (up to 8), as before
collab's thread budget, and the budget the configured defaults give
(``collab.models.defaults.thread_budget``: the two never ask for more threads
than there are cores).

    python bench/colocated.py [--seconds 40] [--slm smollm2-135m] [--llm qwen2.5-coder-1.5b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=120)
PROMPT = "Count from 1 to 300, separated by commas."
TOKENS = 48  # per request: short requests interleave as real traffic does


def speed(model: Any, stop: threading.Event, out: list[tuple[float, float, int]]) -> None:
    """Requests until ``stop``; each as (start, end, tokens written)."""
    while not stop.is_set():
        start = time.perf_counter()
        reply = model.invoke(PROMPT)
        tokens = (reply.usage_metadata or {}).get("output_tokens", 0)
        out.append((start, time.perf_counter(), int(tokens)))


def tokens_per_s(runs: list[tuple[float, float, int]], until: float) -> float:
    """Tokens per second over the requests that ended by ``until``."""
    done = [r for r in runs if r[1] <= until]
    seconds = sum(end - start for start, end, _ in done)
    return sum(t for _, _, t in done) / seconds if seconds else 0.0


def measure(slm_name: str, llm_name: str, seconds: float, budget: bool) -> dict[str, float]:
    """This process's figures: each model alone, then both at once (``seconds`` each)."""
    from collab.config import Settings
    from collab.models import catalog
    from collab.models.defaults import thread_budget
    from collab.models.llamacpp import LlamaCppChatModel, default_threads
    from collab.models.local_server import LocalLLMServer, LocalServerChatModel

    slm_n, llm_n = thread_budget(Settings()) if budget else (default_threads(),) * 2
    slm = LlamaCppChatModel(model=slm_name, temperature=0.0, max_tokens=TOKENS, n_threads=slm_n)
    server = LocalLLMServer(catalog.resolve(llm_name), alias=llm_name, n_threads=llm_n)
    llm = LocalServerChatModel(server=server, temperature=0.0, max_tokens=TOKENS)
    for model in (slm, llm):
        model.invoke(PROMPT)  # loaded, the prompt cached
    out: dict[str, float] = {}
    try:
        for name, models in (("slm", [slm]), ("llm", [llm]), ("both", [slm, llm])):
            stop = threading.Event()
            runs: list[list[tuple[float, float, int]]] = [[] for _ in models]
            workers = [
                threading.Thread(target=speed, args=(m, stop, r))
                for m, r in zip(models, runs, strict=True)
            ]
            for w in workers:
                w.start()
            time.sleep(seconds)
            until = time.perf_counter()  # together: only requests that ran while both did
            stop.set()
            for w in workers:
                w.join()
            if name == "both":
                out["slm_both"], out["llm_both"] = (tokens_per_s(r, until) for r in runs)
            else:
                out[f"{name}_alone"] = tokens_per_s(runs[0], until)
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="per measurement")
    parser.add_argument("--slm", default="smollm2-135m")
    parser.add_argument("--llm", default="qwen2.5-coder-1.5b")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--budget", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.slm, args.llm, args.seconds, args.budget)))
        return
    table = Table(title=f"{args.slm} in-process and {args.llm} behind the stand-in server, "
                  f"{os.cpu_count()} cores")  # fmt: skip
    for column in ("setting", "SLM alone tok/s", "LLM alone tok/s", "SLM together",
                   "LLM together", "SLM keeps", "LLM keeps", "over every-core alone"):  # fmt: skip
        table.add_column(column, justify="left" if column == "setting" else "right")
    settings = (("each model every core (before)", False), ("collab's thread budget", True))
    before: dict[str, float] = {}
    for label, budget in settings:
        console.print(f"measuring {label} ...")
        env = {k: v for k, v in os.environ.items() if k != "COLLAB_N_THREADS"}
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", "--seconds",
             str(args.seconds), "--slm", args.slm, "--llm", args.llm,
             *(["--budget"] if budget else [])],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(done.stdout.strip().splitlines()[-1])
        before = before or r
        table.add_row(
            label, f"{r['slm_alone']:.1f}", f"{r['llm_alone']:.1f}", f"{r['slm_both']:.1f}",
            f"{r['llm_both']:.1f}", f"{r['slm_both'] / r['slm_alone']:.2f}x",
            f"{r['llm_both'] / r['llm_alone']:.2f}x",
            f"SLM {r['slm_both'] / before['slm_alone']:.2f}x, "
            f"LLM {r['llm_both'] / before['llm_alone']:.2f}x",
        )  # fmt: skip
    console.print(table)
    console.print(
        "keeps: tokens per second with both generating, over alone (requests that ended "
        "while both ran); two models sharing the cores fairly keep 0.5x each. Target: 0.4x. "
        "The last column divides by the first row's alone speeds (each model every core)."
    )


if __name__ == "__main__":
    main()
