"""Speculative generation side by side with the target alone: same text, and the speed of each.

    python examples/speculative.py

The task rewrites code it is given, so prompt-lookup (n-gram) drafts copy whole
runs of it and the target only verifies them. Greedy speculative output is the
target's own output, token for token.
"""

from __future__ import annotations

import time

from collab.config import load_settings
from collab.models.llamacpp import LlamaCppChatModel
from collab.speculative import NgramDrafter
from collab.speculative import SpeculativeChatModel
from collab.trace import Trace

CODE = """def total_price(items, tax_rate):
    subtotal = 0
    for item in items:
        subtotal += item.price * item.quantity
    tax = subtotal * tax_rate
    return subtotal + tax
"""
PROMPT = (
    f"Rename the variable subtotal to net_total in this code. Reply with the code only.\n\n{CODE}"
)


def main() -> None:
    settings = load_settings()
    # The LLM's weights, in-process: speculation speeds up the model that is slow.
    target = LlamaCppChatModel(model=settings.llm, temperature=0.0, max_tokens=128)
    target.invoke(PROMPT, max_tokens=1)  # load and warm up before timing either
    fast = SpeculativeChatModel(target=target, drafter=NgramDrafter(), temperature=0.0,
                                max_tokens=128)  # fmt: skip
    results = {}
    for name, model in (("target alone", target), ("speculative", fast)):
        start = time.perf_counter()
        reply = model.invoke(PROMPT)
        seconds = time.perf_counter() - start
        results[name] = (str(reply.content), seconds, Trace.from_metadata(reply.response_metadata))
        print(f"--- {name}: {seconds:.2f}s\n{reply.content}")
    (plain, t_plain, _), (spec, t_spec, trace) = results.values()
    stats = trace.extra.get("speculative", {})
    print(f"\nidentical output: {plain == spec}; speedup {t_plain / t_spec:.2f}x; "
          f"acceptance {stats.get('acceptance', 0):.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
