"""``collab chat``: a terminal chat that streams answers and says who gave each one."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import (
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    message_chunk_to_message,
)
from rich.console import Console

from collab.errors import CollabError
from collab.server.protocol import attribution
from collab.server.workflows import Workflow
from collab.trace import Trace

QUIT = {"/quit", "/exit", "/q"}


def attribution_line(collab: dict[str, Any]) -> str:
    """One line of rich markup: who answered, how, tokens, and the saving against LLM-only."""
    by = collab["answered_by"]
    parts = []
    if by:
        colour = "green" if by["location"] == "local" else "blue"
        parts.append(f"[{colour}]{by['model']} ({by['location']})[/]")
    if collab["strategy"]:
        why = f" ({collab['reason']})" if collab.get("reason") else ""
        parts.append(f"strategy {collab['strategy']}{why}")
    parts.append(f"{collab['local_tokens']} local / {collab['remote_tokens']} remote tokens")
    base = collab["llm_only_cost_usd"]
    share = collab["saved_usd"] / base if base else 0.0
    parts.append(f"saved {share:.0%} vs LLM-only ({collab['saved_usd'] * 1e6:.1f} µ$)")
    return " · ".join(parts)


async def _turn(
    console: Console, workflow: Workflow, history: list[BaseMessage], params: dict[str, Any]
) -> AIMessageChunk | None:
    full: AIMessageChunk | None = None
    async for piece in workflow.astream(history, params):
        if isinstance(piece.content, str) and piece.content:
            console.print(piece.content, end="", markup=False, highlight=False)
        full = piece if full is None else full + piece
    console.print()
    return full


def run_chat(console: Console, workflow: Workflow, *, max_tokens: int = 256) -> None:
    """Read questions until end of input or /quit; keep the conversation as context."""
    console.print(f"[bold]collab chat[/] with {workflow.name}: {workflow.description}. /quit ends.")
    params: dict[str, Any] = {} if workflow.agent else {"max_tokens": max_tokens}

    async def session() -> None:
        history: list[BaseMessage] = []
        while True:
            try:
                text = (await asyncio.to_thread(console.input, "[bold cyan]you>[/] ")).strip()
            except (EOFError, KeyboardInterrupt):
                break
            if text in QUIT:
                break
            if not text:
                continue
            history.append(HumanMessage(text))
            try:
                full = await _turn(console, workflow, history, params)
            except CollabError as exc:
                history.pop()
                console.print(f"[bold red]error:[/] {exc.message}")
                if exc.hint:
                    console.print(f"[yellow]hint:[/] {exc.hint}")
                continue
            if full is None:
                continue
            history.append(message_chunk_to_message(full))
            collab = attribution(Trace.from_metadata(full.response_metadata), workflow.llm_price)
            console.print(f"[dim]{attribution_line(collab)}[/]")

    asyncio.run(session())
