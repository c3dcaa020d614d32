"""``collab demo``: a policy sends each request to the SLM or the LLM, and shows the bill.

An easy question stays on the local SLM; a coding task goes to verify_draft,
where the LLM's small sibling drafts and the LLM reads the drafts and writes
only where it disagrees (the LLM's own answer, mostly written locally); and a
reply that involves a customer's personal data goes to the LLM with that data
redacted first (and restored locally in the answer).
"""

from __future__ import annotations

import json

from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from rich.console import Console
from rich.table import Table

from collab.agents.configured import DEMO_POLICY
from collab.chat_model import CollabChatModel
from collab.config import Settings
from collab.models import catalog
from collab.models.defaults import make_llm, make_slm
from collab.trace import Price, Trace

EASY = "What is the capital of France? Answer in one sentence."
HARD = "Write a Python function that merges two sorted lists into one sorted list in O(n) time."
PRIVATE = (
    "Write a two-sentence reply to our customer Jane Doe (jane.doe@example.com) confirming "
    "that her refund was sent."
)
SYSTEM = "You are a helpful assistant."
# The demo's policy, with hard tasks read, not written, by the LLM.
READING_POLICY = DEMO_POLICY.model_copy(update={"rules": [
    rule.model_copy(update={"strategy": "verify_draft"}) if rule.name == "hard tasks" else rule
    for rule in DEMO_POLICY.rules
]})  # fmt: skip


def ask(console: Console, chat: CollabChatModel, question: str) -> Trace:
    """Stream the answer to the console; return its trace."""
    full: AIMessageChunk | None = None
    for chunk in chat.stream([SystemMessage(SYSTEM), HumanMessage(question)]):
        if isinstance(chunk.content, str) and chunk.content:
            console.print(chunk.content, end="", markup=False, highlight=False)
        full = chunk if full is None else full + chunk
    console.print()
    return Trace.from_metadata(full.response_metadata if full is not None else {})


def drafter_of(settings: Settings) -> str | None:
    """The model that drafts for the stand-in LLM under verify_draft (None: no such model,
    or the LLM is a remote server whose tokenizer is not known)."""
    if settings.llm_base_url or settings.llms:
        return None
    return catalog.drafter_for(settings.llm, settings.slm)


def run_demo(console: Console, easy: str, hard: str, settings: Settings) -> None:
    """The demo on ``settings``' models, which are on disk already (nothing fetched is timed)."""
    console.rule("[bold]collab demo[/]: a local SLM and a remote LLM share the work")
    slm = make_slm(settings, max_tokens=64, temperature=0.0)
    drafter = drafter_of(settings)
    llm = make_llm(
        settings,
        announce=lambda m: console.print(f"[dim]{m}[/]"),
        reads=drafter is not None,
        max_tokens=320,
        temperature=0.0,
    )

    chat = CollabChatModel(slm=slm, llm=llm, policy=DEMO_POLICY)
    coder = chat  # hard tasks: the LLM writes, or verify_draft over the LLM's drafter
    if drafter is not None:
        draft = make_slm(settings.model_copy(update={"slm": drafter}), max_tokens=320,
                         temperature=0.0)  # fmt: skip
        coder = CollabChatModel(slm=draft, llm=llm, policy=READING_POLICY)
    rows: list[tuple[str, Trace]] = []
    for label, question, pair in (("easy", easy, chat), ("hard", hard, coder),
                                  ("private", PRIVATE, chat)):  # fmt: skip
        console.print(f"\n[bold cyan]{label}[/]: {question}")
        decision = pair.decide([HumanMessage(question)])
        console.print(f"[dim]policy: {decision.reason}[/]")
        trace = ask(console, pair, question)
        for request in trace.extra.get("remote_audit", []) if trace.extra.get("redacted") else []:
            body = json.loads(request["body"] or "{}")
            if body.get("messages"):
                sent = body["messages"][-1]["content"]
                console.print(f"[dim]sent to the LLM, redacted: {sent}[/]")
        rows.append((label, trace))
    bill(console, rows, settings.price_of(settings.llm, remote=True))


def bill(console: Console, rows: list[tuple[str, Trace]], llm_price: Price) -> None:
    """Who answered each request and what it cost, against the LLM answering them all."""
    table = Table(title="who answered, and what it cost")
    table.add_column("request")
    table.add_column("strategy")
    table.add_column("model (where)")
    for column in ("in", "out", "seconds", "tok/s", "cost µ$"):
        table.add_column(column, justify="right")
    for label, trace in rows:
        for call in trace.calls:
            table.add_row(
                label, trace.strategy or "", f"{call.model} ({call.location})",
                str(call.input_tokens), str(call.output_tokens), f"{call.latency_s:.1f}",
                f"{call.tokens_per_s:.1f}", f"{call.cost_usd * 1e6:.1f}",
            )  # fmt: skip
    console.print()
    console.print(table)

    spent = sum(t.cost_usd for _, t in rows)
    # what the LLM would have been billed answering each request itself: its prompt, its answer
    all_llm = sum(llm_price.cost(t.calls[0].input_tokens, answer_tokens(t)) for _, t in rows)
    saved = 1 - spent / all_llm if all_llm else 0.0
    verdict = f"{saved:.0%} saved" if saved >= 0 else f"{-saved:.0%} more, for the reading"
    console.print(
        f"Spent {spent * 1e6:.1f} µ$. Sending every request to the LLM would have cost about "
        f"{all_llm * 1e6:.1f} µ$ (the same prompts and answers at the LLM's price): {verdict}. "
        "The easy question never left this machine, and the customer's name and email "
        "never reached the LLM."
    )
    console.print(written_saving(rows))


def answer_tokens(trace: Trace) -> int:
    """The length of the answer a trace records (under verify_draft: the drafted tokens
    kept and the LLM's own)."""
    read = trace.extra.get("verify_draft")
    if read and "accepted" in read:
        return int(read["accepted"] + read["written"])
    return trace.calls[-1].output_tokens if trace.calls else 0


def written_saving(rows: list[tuple[str, Trace]]) -> str:
    """What the LLM wrote against what it would have written answering every request."""
    answered = remote = 0
    line = ""
    for label, trace in rows:
        answer = answer_tokens(trace)
        answered += answer
        remote += trace.tokens_by("remote")[1]
        if read := trace.extra.get("verify_draft"):
            line += (f" On the {label} question the LLM read {read['read']} tokens and wrote "
                     f"{read['written']} of the answer's {answer}: its own answer, drafted "
                     "locally.")  # fmt: skip
    share = 1 - remote / answered if answered else 0.0
    return (f"The LLM wrote {remote} of the {answered} answer tokens, {share:.0%} fewer than "
            f"answering every request itself.{line}")  # fmt: skip
