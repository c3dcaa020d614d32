"""Calibrating the auto tool decision per model on BFCL: call, or answer?

With ``tool_choice="auto"`` an in-process model calls a tool when the
probability it gives to opening a call reaches a threshold. This measures that
probability on BFCL's ``simple_python`` (a call is right) and ``irrelevance``
(no call is right) items, picks the threshold with the best balanced accuracy
on the even items (development), and reports it against the old global 0.002 on
the odd items (held out). The picked value goes in the model's catalog entry
(``tool_call_threshold``), from where its profile and ``tool_choice="auto"`` read it.

    python bench/tool_choice.py [--models smollm2-135m,qwen2.5-coder-0.5b] [--items 60]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bfcl import load, question_of, tools_of

from collab.models.llamacpp import LlamaCppChatModel

console = Console(width=120)
# from 1e-14 (a model may find every call unlikely) up to 0.9 (or every call likely)
GRID = [float(f"{10**e:.1g}") for e in np.arange(-14.0, -0.04, 0.25)]


def probabilities(model: LlamaCppChatModel, category: str, items: int) -> np.ndarray:
    out = []
    for item in track(load(category, items), description=f"{model.model} {category}"):
        reply = model.invoke(
            question_of(item), tools=tools_of(item), tool_choice="auto", tool_call_threshold=1.0
        )
        out.append(float(reply.response_metadata["tool_call_probability"]))
    return np.array(out)


def balanced(call: np.ndarray, none: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(calls made where one is right, calls made where none is, balanced accuracy)."""
    hit, false = float((call >= threshold).mean()), float((none >= threshold).mean())
    return hit, false, (hit + 1 - false) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b")
    parser.add_argument("--items", type=int, default=60, help="per category")
    args = parser.parse_args()
    table = Table(title="auto tool decision on held-out BFCL items (odd ones)")
    for column in ("model", "threshold", "calls when right", "calls when wrong", "balanced"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name in args.models.split(","):
        model = LlamaCppChatModel(model=name, temperature=0.0, max_tokens=1, n_ctx=4096)
        call = probabilities(model, "simple_python", args.items)
        none = probabilities(model, "irrelevance", args.items)
        dev = max(GRID, key=lambda t: balanced(call[::2], none[::2], t)[2])
        for label, threshold in (("0.002 (old)", 0.002), (f"{dev:g} (picked on even)", dev)):
            hit, false, score = balanced(call[1::2], none[1::2], threshold)
            table.add_row(name, label, f"{hit:.2f}", f"{false:.2f}", f"{score:.3f}")
        console.print(f"{name}: median P(call) {np.median(call):.2g} where a call is right, "
                      f"{np.median(none):.2g} where none is")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
