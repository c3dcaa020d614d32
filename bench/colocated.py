"""Two local models on one machine's cores: the SLM in-process and the stand-in LLM server.

Each generates alone, then both generate at the same time; a model's speed
together, over its speed alone, is what it keeps (two models sharing the cores
fairly keep 0.5x each). Measured twice, side by side in one run: with collab's
CPU gate (``collab.models.cpu_gate``: one llama.cpp computation at a time, across
processes) and without it, as before the gate, where each model's threads take
every core and spin while they wait. Each setting runs in its own process, with
its own server, both at their default thread counts.

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


def measure(slm_name: str, llm_name: str, seconds: float) -> dict[str, float]:
    """This process's figures: each model alone, then both at once (``seconds`` each)."""
    from collab.models import catalog
    from collab.models.llamacpp import LlamaCppChatModel
    from collab.models.local_server import LocalLLMServer, LocalServerChatModel

    slm = LlamaCppChatModel(model=slm_name, temperature=0.0, max_tokens=TOKENS)
    server = LocalLLMServer(catalog.resolve(llm_name), alias=llm_name)
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
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.slm, args.llm, args.seconds)))
        return
    table = Table(title=f"{args.slm} in-process and {args.llm} behind the stand-in server")
    for column in ("setting", "SLM alone tok/s", "LLM alone tok/s", "SLM together",
                   "LLM together", "SLM keeps", "LLM keeps"):  # fmt: skip
        table.add_column(column, justify="left" if column == "setting" else "right")
    for label, gate in (("without the CPU gate (before)", "false"), ("with the CPU gate", "true")):
        console.print(f"measuring {label} ...")
        env = {**os.environ, "COLLAB_CPU_GATE": gate}
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", "--seconds",
             str(args.seconds), "--slm", args.slm, "--llm", args.llm],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(done.stdout.strip().splitlines()[-1])
        table.add_row(
            label, f"{r['slm_alone']:.1f}", f"{r['llm_alone']:.1f}", f"{r['slm_both']:.1f}",
            f"{r['llm_both']:.1f}", f"{r['slm_both'] / r['slm_alone']:.2f}x",
            f"{r['llm_both'] / r['llm_alone']:.2f}x",
        )  # fmt: skip
    console.print(table)
    console.print(
        "keeps: tokens per second with both generating, over alone (requests that ended "
        "while both ran); two models sharing the cores fairly keep 0.5x each. Target: 0.4x."
    )


if __name__ == "__main__":
    main()
