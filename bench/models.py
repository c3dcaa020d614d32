"""Decode speed of each backend, and the cost of collab's wrapper over raw llama-cpp-python.

Runs side by side in one process, interleaved and repeated, so that the ratios
hold on a shared, noisy machine even when absolute numbers drift.

    python bench/models.py [--models smollm2-135m,qwen2.5-coder-0.5b,...] [--tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from langchain_core.messages import HumanMessage
from llama_cpp.llama_grammar import LlamaGrammar
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from collab.models import catalog
from collab.models.decoding import RunStats, decode_text
from collab.models.engine import Grammar, Sampling
from collab.models.llamacpp import LlamaCppChatModel, LlamaCppEngine
from collab.models.local_server import LocalLLMServer
from collab.models.openai import OpenAICompatibleChatModel
from collab.models.tool_format import to_openai_tools, tool_call_schema
from collab.trace import Trace

PROMPT = "Write a Python class for a bank account with deposit, withdraw and a transaction log."
console = Console(width=160)


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn()
    return time.perf_counter() - start, n


def bench_llamacpp(name: str, tokens: int, repeats: int) -> dict[str, float]:
    """Raw ``Llama.create_completion`` vs ``LlamaCppChatModel`` on one loaded model."""
    model = LlamaCppChatModel(model=name, temperature=0.0, max_tokens=tokens, n_ctx=2048)
    messages = [HumanMessage(PROMPT)]
    prompt_text = model.render(messages)
    llama = model.llama

    def raw() -> int:
        with model.engine.lock:
            out = llama.create_completion(
                prompt_text, max_tokens=tokens, temperature=0.0, top_k=40, top_p=0.95
            )
        return int(out["usage"]["completion_tokens"])

    def wrapped() -> int:
        msg = model.invoke(messages)
        return Trace.from_metadata(msg.response_metadata).calls[0].output_tokens

    raw(), wrapped()  # warm up: load, fill caches
    raw_rates, wrapped_rates, ratios = [], [], []
    for i in range(repeats):
        # Side by side, alternating who goes first, so drift hits both alike;
        # the overhead is the median of the per-round ratios.
        order = (raw, wrapped) if i % 2 == 0 else (wrapped, raw)
        rates = {}
        for fn in order:
            s, n = timed(fn)
            rates[fn] = n / s
        raw_rates.append(rates[raw])
        wrapped_rates.append(rates[wrapped])
        ratios.append(rates[raw] / rates[wrapped])
    return {
        "raw": statistics.median(raw_rates),
        "collab": statistics.median(wrapped_rates),
        "overhead": statistics.median(ratios),
    }


class BookFlight(BaseModel):
    """Book a flight."""

    origin: str
    destination: str
    date: str = Field(description="YYYY-MM-DD")
    passengers: int


FLIGHT = "Book a flight from Paris to Tokyo on 2026-12-24 for 2 passengers."


def bench_constrained(name: str, repeats: int) -> dict[str, float]:
    """Decode tokens/s after one prompt: free, under collab's grammar, under llama-cpp-python's.

    The prompt asks for the call and opens it; free decoding continues a call already
    started, so it writes the same kind of JSON. Prompts are cached, so the rates are
    decoding alone.
    """
    model = LlamaCppChatModel(model=name, temperature=0.0, n_ctx=2048)
    engine = model.engine
    if not isinstance(engine, LlamaCppEngine):
        raise TypeError(f"{name} is not a llama.cpp model")
    specs = to_openai_tools([BookFlight])
    schema = tool_call_schema(specs, ["BookFlight"])
    text = model.render([HumanMessage(FLIGHT)], specs) + model.call_opening(specs)
    prompt = engine.encode_prompt(text)
    started = prompt + engine.tokenize('{"name": "BookFlight", "arguments": {"origin": "')
    greedy = Sampling(temperature=0.0, max_tokens=64, stop=[])

    def collab(constrained: bool) -> Callable[[], int]:
        def run() -> int:
            stats = RunStats()
            after, grammar = (prompt, Grammar(schema)) if constrained else (started, None)
            with engine.lock:
                "".join(decode_text(engine, after, greedy, grammar, stats))
            return stats.output_tokens

        return run

    def full_vocabulary() -> int:  # llama-cpp-python's grammar sampler: every token, every step
        grammar = LlamaGrammar.from_string(engine._gbnf(schema))
        n = 0
        with engine.lock:
            engine.logits(prompt[:-1], len(prompt) - 1)
            for token in engine.llama.generate(prompt, temp=0.0, repeat_penalty=1.0,
                                               grammar=grammar):  # fmt: skip
                if engine.is_eog(token) or n >= greedy.max_tokens:
                    break
                n += 1
        return n

    runs = {"free": collab(False), "constrained": collab(True), "full": full_vocabulary}
    for fn in runs.values():
        fn()  # warm up: load, cache the prompt, compile the grammar
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(repeats):
        for key in list(runs)[i % 3 :] + list(runs)[: i % 3]:  # rotate who goes first
            seconds, n = timed(runs[key])
            rates[key].append(n / seconds)
    return {k: statistics.median(v) for k, v in rates.items()}


def bench_server(name: str, tokens: int, repeats: int) -> float:
    path = catalog.resolve(name)
    with LocalLLMServer(path, alias=name, n_ctx=2048) as server:
        model = OpenAICompatibleChatModel(
            location="remote",  # stands in for a remote LLM
            model=name,
            base_url=server.base_url,
            temperature=0.0,
            max_tokens=tokens,
        )
        model.invoke(PROMPT)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            n = sum(1 for c in model.stream(PROMPT) if c.content)
            rates.append(n / (time.perf_counter() - start))
        return statistics.median(rates)


def bench_transformers(name: str, tokens: int, repeats: int) -> float | None:
    try:
        from collab.models.transformers import TransformersChatModel
    except ImportError:
        return None
    model = TransformersChatModel(model=name, temperature=0.0, max_tokens=tokens)
    model.invoke(PROMPT)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        msg = model.invoke(PROMPT)
        n = Trace.from_metadata(msg.response_metadata).calls[0].output_tokens
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hf-tokens", type=int, default=32, help="transformers is slow on CPU")
    parser.add_argument("--no-transformers", action="store_true")
    args = parser.parse_args()

    table = Table(
        title=f"decode tokens/s (greedy, {args.tokens} new tokens, median of {args.repeats} "
        "alternating rounds; "
        f"transformers: {args.hf_tokens} tokens, once)"
    )
    for col in ("model", "llama-cpp-python raw", "collab llama.cpp", "wrapper overhead",
                "collab via server", "collab transformers", "free (call prompt)",
                "constrained", "constrained ÷ free", "llama-cpp-python grammar"):  # fmt: skip
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in args.models.split(","):
        console.print(f"[dim]benchmarking {name} ...[/]")
        catalog.resolve(name)
        llama = bench_llamacpp(name, args.tokens, args.repeats)
        served = bench_server(name, args.tokens, args.repeats)
        hf = None if args.no_transformers else bench_transformers(name, args.hf_tokens, 1)
        grammar = bench_constrained(name, args.repeats)
        ratio = grammar["constrained"] / grammar["free"] if grammar["free"] else 0.0
        console.print(f"{name}: wrapper {llama}, server {served:.1f}, decoding {grammar}")
        table.add_row(
            name,
            f"{llama['raw']:.1f}",
            f"{llama['collab']:.1f}",
            f"{llama['overhead']:.3f}x" + (" ✓" if llama["overhead"] <= 1.05 else " ✗"),
            f"{served:.1f}",
            "-" if hf is None else f"{hf:.1f}",
            f"{grammar['free']:.1f}",
            f"{grammar['constrained']:.1f}",
            f"{ratio:.2f}x" + (" ✓" if ratio >= 0.8 else " ✗"),
            f"{grammar['full']:.1f}",
        )
    console.print(table)
    console.print(
        "wrapper overhead = raw tokens/s ÷ collab tokens/s on the same loaded model "
        "(target ≤ 1.05). 'via server' includes HTTP and llama-cpp-python's server loop. "
        "Constrained: a tool call decoded under its grammar, after the same prompt as free "
        "decoding (target ≥ 0.8x of free); the last column masks the whole vocabulary at every "
        "step, as llama-cpp-python's sampler does."
    )


if __name__ == "__main__":
    main()
