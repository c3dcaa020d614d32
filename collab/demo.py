"""``collab demo``: the SLM answers an easy question, the LLM a hard one, with the bill."""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from rich.console import Console
from rich.table import Table

from collab.config import load_settings
from collab.models.defaults import make_llm, make_slm
from collab.trace import ModelCall, Trace

EASY = "What is the capital of France? Answer in one sentence."
HARD = (
    "Write a Python function `is_palindrome(s)` that ignores case, spaces and "
    "punctuation. Then explain in one sentence why it is O(n)."
)
SYSTEM = "You are a helpful, concise assistant."


def ask(console: Console, model: BaseChatModel, question: str) -> ModelCall:
    """Stream ``model``'s answer to the console; return what the call cost."""
    full: AIMessageChunk | None = None
    for chunk in model.stream([SystemMessage(SYSTEM), HumanMessage(question)]):
        if isinstance(chunk.content, str) and chunk.content:
            console.print(chunk.content, end="", markup=False, highlight=False)
        full = chunk if full is None else full + chunk
    console.print()
    assert full is not None
    return Trace.from_metadata(full.response_metadata).calls[0]


def run_demo(console: Console, easy: str, hard: str, *, resolve: Callable[[str], str]) -> None:
    settings = load_settings()
    console.rule("[bold]collab demo[/]: a local SLM and a remote LLM share the work")
    for name in (settings.slm, settings.llm if not settings.llm_base_url else None):
        if name:
            resolve(name)  # fetch once, with a progress bar, before timing anything
    slm = make_slm(settings, max_tokens=64, temperature=0.0)
    llm = make_llm(settings, announce=lambda m: console.print(f"[dim]{m}[/]"), max_tokens=256,
                   temperature=0.0)  # fmt: skip

    rows: list[tuple[str, str, ModelCall]] = []
    for label, question, model, role in (("easy", easy, slm, "SLM"), ("hard", hard, llm, "LLM")):
        name = getattr(model, "model", type(model).__name__)
        console.print(f"\n[bold cyan]{label} question → {role} ({name})[/]: {question}")
        call = ask(console, model, question)
        rows.append((label, role, call))

    table = Table(title="who answered, and what it cost")
    for column in ("question", "model", "where", "tokens in", "tokens out", "latency",
                   "tok/s", "cost"):  # fmt: skip
        table.add_column(
            column, justify="right" if column.startswith(("tok", "lat", "cost")) else "left"
        )
    for label, role, call in rows:
        table.add_row(
            label, f"{role}: {call.model}", call.location, str(call.input_tokens),
            str(call.output_tokens), f"{call.latency_s:.1f}s", f"{call.tokens_per_s:.1f}",
            f"${call.cost_usd:.6f}",
        )  # fmt: skip
    console.print()
    console.print(table)

    llm_price = settings.price_of(settings.llm, remote=True)
    spent = sum(call.cost_usd for _, _, call in rows)
    all_llm = sum(llm_price.cost(c.input_tokens, c.output_tokens) for _, _, c in rows)
    saved = 1 - spent / all_llm if all_llm else 0.0
    console.print(
        f"Spent ${spent:.6f}. Sending both questions to the LLM would have cost about "
        f"${all_llm:.6f} (same token counts, LLM price): {saved:.0%} saved, and the easy "
        "question never left this machine."
    )
