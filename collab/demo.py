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
HARD = "Write a Python function that merges two sorted lists into one sorted list in O(n) time."
SYSTEM = "You are a helpful assistant."


def ask(console: Console, model: BaseChatModel, question: str) -> tuple[ModelCall, bool]:
    """Stream ``model``'s answer to the console; return what it cost, and if usage is estimated."""
    full: AIMessageChunk | None = None
    for chunk in model.stream([SystemMessage(SYSTEM), HumanMessage(question)]):
        if isinstance(chunk.content, str) and chunk.content:
            console.print(chunk.content, end="", markup=False, highlight=False)
        full = chunk if full is None else full + chunk
    console.print()
    assert full is not None
    estimated = bool(full.response_metadata.get("usage_estimated"))
    return Trace.from_metadata(full.response_metadata).calls[0], estimated


def run_demo(console: Console, easy: str, hard: str, *, resolve: Callable[[str], str]) -> None:
    settings = load_settings()
    console.rule("[bold]collab demo[/]: a local SLM and a remote LLM share the work")
    for name in (settings.slm, settings.llm if not settings.llm_base_url else None):
        if name:
            resolve(name)  # fetch once, with a progress bar, before timing anything
    slm = make_slm(settings, max_tokens=64, temperature=0.0)
    llm = make_llm(
        settings,
        announce=lambda m: console.print(f"[dim]{m}[/]"),
        max_tokens=320,
        temperature=0.0,
    )

    rows: list[tuple[str, str, ModelCall, bool]] = []
    for label, question, model, role in (("easy", easy, slm, "SLM"), ("hard", hard, llm, "LLM")):
        name = getattr(model, "model", type(model).__name__)
        console.print(f"\n[bold cyan]{label} question → {role} ({name})[/]: {question}")
        call, estimated = ask(console, model, question)
        rows.append((label, role, call, estimated))

    table = Table(title="who answered, and what it cost")
    table.add_column("question")
    table.add_column("model (where)")
    for column in ("in", "out", "seconds", "tok/s", "cost µ$"):
        table.add_column(column, justify="right")
    for label, role, call, estimated in rows:
        approx = "~" if estimated else ""
        table.add_row(
            label,
            f"{role} {call.model} ({call.location})",
            f"{approx}{call.input_tokens}",
            f"{approx}{call.output_tokens}",
            f"{call.latency_s:.1f}",
            f"{call.tokens_per_s:.1f}",
            f"{call.cost_usd * 1e6:.1f}",
        )
    console.print()
    console.print(table)
    if any(estimated for *_, estimated in rows):
        console.print("[dim]~ counted client-side: this server reports no usage when streaming.[/]")

    llm_price = settings.price_of(settings.llm, remote=True)
    spent = sum(call.cost_usd for _, _, call, _ in rows)
    all_llm = sum(llm_price.cost(c.input_tokens, c.output_tokens) for _, _, c, _ in rows)
    saved = 1 - spent / all_llm if all_llm else 0.0
    console.print(
        f"Spent {spent * 1e6:.1f} µ$. Sending both questions to the LLM would have cost about "
        f"{all_llm * 1e6:.1f} µ$ (same token counts at the LLM's price): {saved:.0%} saved, "
        "and the easy question never left this machine."
    )
