"""Tokens to text: one decode over an engine, honouring stop strings, the budget and the context."""

from __future__ import annotations

import codecs
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from collab.errors import ContextLengthError
from collab.models.engine import Engine, Grammar, Sampling


@dataclass
class RunStats:
    """What one call decoded, summed over its decodes."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = "stop"
    tokens: list[int] = field(default_factory=list)  # of the last decode
    metadata: dict[str, Any] = field(default_factory=dict)  # for response_metadata


def first_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def decode_text(
    engine: Engine,
    prompt: list[int],
    sampling: Sampling,
    grammar: Grammar | None,
    stats: RunStats,
    cancel: threading.Event | None = None,
) -> Iterator[str]:
    """Text pieces after ``prompt``, honouring stop strings and max_tokens; fills ``stats``.

    The caller holds ``engine.lock``. Text that could be the start of a stop
    string is held back until it is known not to be one.
    """
    room = engine.n_ctx - len(prompt)
    if room < 1:
        raise ContextLengthError(
            f"the prompt has {len(prompt)} tokens; the context holds {engine.n_ctx}",
            hint="shorten the conversation, or load the model with a larger n_ctx",
        )
    budget = min(sampling.max_tokens, room)
    stats.prompt_tokens += len(prompt)
    stats.finish_reason = "length"
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    hold = max((len(s) for s in sampling.stop), default=1) - 1
    pending = ""
    stats.tokens = []
    gen = engine.generate(prompt, sampling, grammar)
    try:
        for token in gen:
            if cancel is not None and cancel.is_set():
                stats.finish_reason = "cancelled"
                return
            if engine.is_eog(token):
                stats.finish_reason = "stop"
                break
            stats.output_tokens += 1
            stats.tokens.append(token)
            pending += decoder.decode(engine.piece(token))
            cut = first_stop(pending, sampling.stop)
            if cut is not None:
                if pending[:cut]:
                    yield pending[:cut]
                stats.finish_reason = "stop"
                return
            if len(pending) > hold:
                emit, pending = pending[: len(pending) - hold], pending[len(pending) - hold :]
                yield emit
            if len(stats.tokens) >= budget:
                break
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending
