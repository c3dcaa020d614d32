"""Concurrent streaming clients against ``collab serve``.

Two parts:

- ``slm``: ``collab-slm`` and llama-cpp-python's own server serve the same SLM
  (SmolLM2-135M) on 127.0.0.1 with the same threads; for 1, 8 and 32 concurrent
  clients it prints requests/s, time to first token (p50, p95), errors, and the
  ratios collab / llama-cpp-python, the servers measured one at a time, alternating.
- ``llm``: ``collab-auto`` under a policy that sends every request to the LLM
  (``bench/remote_llm.py``: a hosted API's concurrency, first token after 0.5 s).
  For 1, 8 and 24 clients: requests/s against one client's, and TTFT. The SLM's
  queue must not serialize what the SLM does not answer.

    python bench/server.py [--parts slm,llm] [--clients 1,8,32] [--llm-clients 1,8,24]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.remote_llm import remote_llm_app
from collab.models import catalog
from collab.models.local_server import LocalLLMServer, free_port
from collab.server import BackgroundServer

SLM = "smollm2-135m"
THREADS = 2
N_CTX = 2048
PROMPTS = [
    "Write one sentence about the sea.",
    "Name three fruits and their colours.",
    "Explain what a compiler does in one sentence.",
    "Give a short tip for learning to cook.",
]
console = Console(width=120)


@dataclass
class Run:
    ttft: list[float] = field(default_factory=list)
    pieces: int = 0  # streamed content deltas: one per token on both servers
    errors: int = 0
    done: int = 0
    seconds: float = 0.0


async def one_request(
    http: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int, run: Run
) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    start = time.perf_counter()
    first = None
    finished = False
    try:
        async with http.stream("POST", url, json=body) as reply:
            if reply.status_code != 200:
                run.errors += 1
                return
            async for line in reply.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    finished = True
                    break
                event = json.loads(data)
                if "error" in event:
                    break
                delta = event["choices"][0]["delta"] if event.get("choices") else {}
                if delta.get("content"):
                    run.pieces += 1
                    if first is None:
                        first = time.perf_counter() - start
    except httpx.HTTPError:
        pass
    if finished and first is not None:
        run.ttft.append(first)
        run.done += 1
    else:
        run.errors += 1


async def load(url: str, model: str, clients: int, requests: int, max_tokens: int) -> Run:
    run = Run()
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:

        async def client(i: int) -> None:
            for r in range(max(requests, 8 // clients)):  # at least 8 requests per level
                prompt = PROMPTS[(i + r) % len(PROMPTS)]
                await one_request(http, url, model, prompt, max_tokens, run)

        start = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        run.seconds = time.perf_counter() - start
    return run


def start_collab(port: int, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "COLLAB_SLM": SLM, "COLLAB_N_CTX": str(N_CTX),
           "COLLAB_N_THREADS": str(THREADS)}  # fmt: skip
    collab = Path(sys.executable).parent / "collab"
    process = subprocess.Popen(
        [str(collab), "serve", "--port", str(port), "--max-queue", "256", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("collab serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="slm,llm")
    parser.add_argument("--clients", default="1,8,32", help="levels of the slm part")
    parser.add_argument("--llm-clients", default="1,8,24", help="levels of the llm part")
    parser.add_argument("--requests", type=int, default=2, help="per client, one after another")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--llm-latency", type=float, default=0.5, help="seconds to first token")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if "slm" in parts:
        slm_part([int(c) for c in args.clients.split(",")], args.requests, args.max_tokens)
    if "llm" in parts:
        llm_part([int(c) for c in args.llm_clients.split(",")], args.requests, args.llm_latency)


def llm_part(levels: list[int], requests: int, latency: float) -> None:
    """collab-auto when the policy sends every request to a remote LLM."""
    remote = BackgroundServer(remote_llm_app(latency))
    config = Path(tempfile.mkdtemp()) / "collab.toml"
    config.write_text(
        f'[[llms]]\nbase_url = "{remote.url}/v1"\nmodel = "remote-llm"\n'
        '[policy]\ndefault = "llm_only"\n'
        '[[workflows]]\nname = "collab-auto"\nkind = "pair"\n'
    )
    port = free_port()
    collab = start_collab(port, "--config", str(config))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    runs: dict[int, Run] = {}
    try:
        asyncio.run(load(url, "collab-auto", 1, 1, 16))  # warm up
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("collab-auto, the LLM answering", total=len(levels))
            for clients in levels:
                bar.update(task, description=f"collab-auto, {clients} clients")
                runs[clients] = asyncio.run(load(url, "collab-auto", clients, requests, 16))
                bar.advance(task)
    finally:
        collab.terminate()
        collab.wait(timeout=30)
        remote.stop()
    table = Table(title=f"collab-auto, policy llm_only, remote LLM: first token after {latency} s")
    for column in ("clients", "requests", "errors", "req/s", "TTFT p50 s", "TTFT p95 s",
                   "req/s vs 1 client"):  # fmt: skip
        table.add_column(column, justify="right")
    one = runs[levels[0]].done / runs[levels[0]].seconds
    for clients, run in runs.items():
        rate = run.done / run.seconds
        p50, p95 = np.percentile(run.ttft, [50, 95]) if run.ttft else (float("nan"),) * 2
        table.add_row(
            str(clients), str(run.done + run.errors), str(run.errors), f"{rate:.2f}",
            f"{p50:.3f}", f"{p95:.3f}", f"{rate / one:.2f}x",
        )  # fmt: skip
    console.print(table)
    console.print("Target: with 8 clients, at least 4x the requests/s of one client.")


def slm_part(levels: list[int], requests: int, max_tokens: int) -> None:
    """collab-slm against llama-cpp-python's server, same model and threads."""
    llama = LocalLLMServer(catalog.resolve(SLM), alias=SLM, n_ctx=N_CTX, n_threads=THREADS)
    llama.start()
    port = free_port()
    collab = start_collab(port)
    targets = {
        "collab": (f"http://127.0.0.1:{port}/v1/chat/completions", "collab-slm"),
        "llama-cpp-python": (f"{llama.base_url}/chat/completions", SLM),
    }
    results: dict[tuple[str, int], Run] = {}
    try:
        for url, model in targets.values():  # warm both up
            asyncio.run(load(url, model, 1, 1, 4))
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("server bench", total=len(levels) * 2)
            for i, clients in enumerate(levels):
                order = list(targets) if i % 2 == 0 else list(reversed(targets))
                for name in order:
                    url, model = targets[name]
                    bar.update(task, description=f"{name}, {clients} clients")
                    results[name, clients] = asyncio.run(
                        load(url, model, clients, requests, max_tokens)
                    )
                    bar.advance(task)
    finally:
        collab.terminate()
        collab.wait(timeout=30)
        llama.stop()
    slm_table(levels, targets, results, max_tokens)


def slm_table(
    levels: list[int], targets: dict[str, tuple[str, str]], results: dict[tuple[str, int], Run],
    max_tokens: int,
) -> None:  # fmt: skip
    table = Table(title=f"{SLM}, streaming, {max_tokens} tokens per answer")
    for column in ("clients", "server", "requests", "errors", "req/s", "tok/s", "TTFT p50 s",
                   "TTFT p95 s", "collab/llama req/s", "collab/llama TTFT p95"):  # fmt: skip
        table.add_column(column, justify="right")
    for clients in levels:
        stats = {}
        for name in targets:
            run = results[name, clients]
            p50, p95 = np.percentile(run.ttft, [50, 95]) if run.ttft else (float("nan"),) * 2
            stats[name] = (run.done / run.seconds, p95)
            table.add_row(
                str(clients), name, str(run.done + run.errors), str(run.errors),
                f"{run.done / run.seconds:.2f}", f"{run.pieces / run.seconds:.1f}",
                f"{p50:.3f}", f"{p95:.3f}", "", "",
            )  # fmt: skip
        ours, theirs = stats["collab"], stats["llama-cpp-python"]
        table.add_row(
            "", "", "", "", "", "", "", "",
            f"{ours[0] / theirs[0]:.2f}x", f"{ours[1] / theirs[1]:.2f}x", end_section=True,
        )  # fmt: skip
    console.print(table)
    console.print(
        "Targets: no errors; for collab-slm, TTFT p95 at most 1.2x and throughput at least "
        "1/1.2 of llama-cpp-python's server."
    )


if __name__ == "__main__":
    main()
