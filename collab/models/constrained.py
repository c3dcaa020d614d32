"""Grammar-constrained tool calls and structured output over an ``Engine``.

A call is decoded under a JSON-schema grammar, so it always parses. Greedy
decoding picks a tool token by token, which can favour a name whose first
piece is likely over one likelier as a whole ("get_culture" over
"get_monarchs"): a single greedy call has its tool chosen over whole names,
and is written again for the likeliest tool when it picked another. With
``score``, how likely the free model finds the call it was held to goes into
``response_metadata["tool_call_logprob"]``, a confidence signal. Every
function here expects the caller to hold ``engine.lock``.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from langchain_core.messages import AIMessageChunk
from langchain_core.messages.tool import tool_call_chunk

from collab.errors import ModelOutputError
from collab.messages import TOOL_OPEN
from collab.models.decoding import RunStats, decode_text
from collab.models.engine import (
    Engine,
    Grammar,
    Sampling,
    continuation_logprobs,
    eos_token,
    pick_token,
)
from collab.models.tool_format import (
    CALL_OPENINGS,
    CALL_START,
    TOOL_CALL_MIN_TOKENS,
    new_tool_call_id,
    parse_tool_call,
    tool_call_schema,
)

# Most calls a reply with parallel_tool_calls=True may hold.
MAX_PARALLEL = 8
# Where the value of a call's "name" starts, in the JSON that a grammar let through.
NAME_VALUE = re.compile(r'"name"\s*:\s*"')
PARALLEL_HINT = (
    "To call several functions, or one function several times, put every call in one "
    'JSON list: [{"name": ..., "arguments": ...}, ...].'
)


class ArrayRepeats:
    """Watches JSON as it is written for an array element equal to the one before it.

    Small models under a grammar can repeat one element until the budget runs
    out; the first repeat ends the array instead.
    """

    def __init__(self) -> None:
        self.text = ""
        self._in_string = self._escaped = False
        # per open container: its bracket, where its current element starts, and
        # the previous element's text and end (arrays only)
        self._open: list[list[Any]] = []

    def feed(self, piece: str) -> int | None:
        """Where to cut the text (the end of the earlier element) once ``piece``
        completes a repeat; None while there is none."""
        for ch in piece:
            self.text += ch
            at = len(self.text) - 1
            if self._in_string:
                self._in_string = self._escaped or ch != '"'
                self._escaped = not self._escaped and ch == "\\"
            elif ch == '"':
                self._in_string = True
            elif ch in "[{":
                self._open.append([ch, at + 1, None])
            elif ch in ",]}" and self._open:
                top = self._open[-1]
                if top[0] == "[":
                    element = self.text[top[1] : at].strip()
                    if element and top[2] is not None and element == top[2][0]:
                        return int(top[2][1])
                    top[1], top[2] = at + 1, (element, at)
                if ch != ",":
                    self._open.pop()
        return None


@dataclass(frozen=True)
class CallSettings:
    parallel: bool = False  # a JSON array of calls instead of one call
    score: bool = False  # report the call's log-probability under the free model


_OPENERS: weakref.WeakKeyDictionary[Any, npt.NDArray[np.int64]] = weakref.WeakKeyDictionary()


def call_openers(engine: Engine, vocab: int) -> npt.NDArray[np.int64]:
    """The tokens a reply that is a call written as text starts with: ``<tool_call>``, a
    JSON object or list, a code fence (found once per engine)."""
    if engine not in _OPENERS:
        starts = (TOOL_OPEN.encode(), b"{", b"[", b"```")
        _OPENERS[engine] = np.array(
            [t for t in range(vocab) if engine.piece(t).lstrip().startswith(starts)],
            dtype=np.int64,
        )
    return _OPENERS[engine]


def answer_not_call(
    engine: Engine,
    prompt: list[int],
    sampling: Sampling,
    stats: RunStats,
    cancel: threading.Event | None = None,
) -> Iterator[str]:
    """Text after ``prompt`` that does not open a tool call (``tool_choice="none"``):
    small models that have just seen calls in the conversation write one more as text."""
    row = engine.logits(prompt, len(prompt) - 1)[-1].copy()
    row[call_openers(engine, row.shape[0])] = -np.inf
    row[eos_token(engine)] = -np.inf  # and not nothing: an empty answer is no answer
    first = pick_token(row, sampling, np.random.default_rng(sampling.seed))
    rest = replace(sampling, max_tokens=sampling.max_tokens - 1)
    head = engine.piece(first).decode("utf-8", "replace")
    if rest.max_tokens < 1:
        stats.output_tokens += 1
        stats.finish_reason = "length"
        yield head
        return
    pieces = decode_text(engine, [*prompt, first], rest, None, stats, cancel)
    stats.prompt_tokens -= 1  # the first token was counted as prompt: it is output
    stats.output_tokens += 1
    yield head
    yield from pieces


def call_probability(engine: Engine, prompt: list[int], stats: RunStats) -> float:
    """The probability the model gives to opening a tool call after ``prompt``, in any
    of the ways a call is read (``CALL_OPENINGS``): a model taught ``<tool_call>`` may
    still write its JSON bare or fenced, as Qwen2.5-Coder does."""
    sequences = {tuple(engine.tokenize(opening + CALL_START)) for opening in CALL_OPENINGS}
    probability = sum(
        float(np.exp(continuation_logprobs(engine, prompt, list(tokens)).sum()))
        for tokens in sorted(sequences)
    )
    stats.metadata["tool_call_probability"] = probability
    return probability


def forced_call(
    engine: Engine,
    prompt_text: str,
    opening: str,
    sampling: Sampling,
    tools: list[dict[str, Any]],
    names: list[str] | None,
    stats: RunStats,
    calls: CallSettings,
) -> str:
    """JSON of one call to one of ``names`` (all tools if None), grammar-constrained.

    ``opening``: what the model writes before the call's JSON. With
    ``calls.parallel`` the JSON is an array of one or more calls.
    """
    offered = names or [t["function"]["name"] for t in tools]
    # A call cut short is no call: give it room to close its (bounded) JSON.
    budget = max(sampling.max_tokens, TOOL_CALL_MIN_TOKENS)
    schema = tool_call_schema(tools, offered)
    if calls.parallel:
        schema = {"type": "array", "items": schema, "minItems": 1, "maxItems": MAX_PARALLEL}
        budget *= 2
        # Templates with native tools teach one tagged call per block, and small
        # models end their turn after the first; a fenced JSON list (what the
        # prompt asks for, see PARALLEL_HINT) is what they write for several.
        opening = "```json\n" if opening else opening
    prefilled = engine.encode_prompt(prompt_text + opening)
    free = replace(sampling, stop=[], max_tokens=budget)
    text = json_under(engine, prefilled, free, schema, stats)
    stats.finish_reason = "tool_calls"
    greedy_one = not calls.parallel and sampling.temperature == 0
    choice = name_logprobs(engine, prefilled, text, offered) if greedy_one or calls.score else None
    if choice and greedy_one:
        chosen, logprobs = choice
        best = max(logprobs, key=logprobs.__getitem__)
        if best != chosen:
            schema = tool_call_schema(tools, [best])
            text = json_under(engine, prefilled, free, schema, stats)
            choice = best, logprobs
            stats.metadata["tool_rechosen"] = {"from": chosen, "to": best}
    if calls.score:
        score_call(engine, prefilled, text, choice, stats)
    return text


def json_under(
    engine: Engine,
    prompt: list[int],
    sampling: Sampling,
    schema: dict[str, Any],
    stats: RunStats,
    cancel: threading.Event | None = None,
) -> str:
    """JSON after ``prompt`` under ``schema``; an array that repeats an element is ended
    there, and decoding goes on after it."""
    written, start = "", stats.output_tokens
    for _ in range(MAX_PARALLEL):  # each round ends one array
        watch = ArrayRepeats()
        watch.feed(written)
        cut = None
        tail = engine.tokenize(written, special=False) if written else []
        spent = stats.output_tokens - start
        room = replace(sampling, max_tokens=max(1, sampling.max_tokens - spent))
        grammar = Grammar(schema, written=len(tail))
        for piece in decode_text(engine, prompt + tail, room, grammar, stats, cancel):
            cut = watch.feed(piece)
            if cut is not None:
                break
        if cut is None:
            return watch.text
        written = watch.text[:cut] + "]"
        stats.metadata.setdefault("repeats_cut", 0)
        stats.metadata["repeats_cut"] += 1
    return written


def score_call(
    engine: Engine,
    prefilled: list[int],
    text: str,
    choice: tuple[str, dict[str, float]] | None,
    stats: RunStats,
) -> None:
    """How likely the free model finds the call it was held to (a confidence signal).

    The call's text is scored as the model's tokenizer writes it. The grammar
    may have reached it through other tokens (``"}`` then ``}`` for ``"}}``),
    which the free model finds unlikely for reasons that have nothing to do
    with the call.
    """
    made = engine.tokenize(text, special=False)
    if not made:
        return
    # The first token only says "a call starts" (tool_call_probability says
    # how likely that was); the rest says how sure the model is of the call.
    scores = continuation_logprobs(engine, prefilled, made)[1:]
    scores = scores if scores.size else np.zeros(1)
    stats.metadata["tool_call_logprob"] = {
        "mean": float(scores.mean()),
        "min": float(scores.min()),
        "tokens": len(made),
        "text": text,  # what was scored: the call's JSON as the model wrote it
        # the tool called, and every tool offered, as log p among the tools offered
        "name": choice[1][choice[0]] if choice else 0.0,
        "names": choice[1] if choice else {},
    }


def name_logprobs(
    engine: Engine, prefilled: list[int], text: str, names: list[str]
) -> tuple[str, dict[str, float]] | None:
    """The tool the (first) call in ``text`` chose, and log p of each of ``names``.

    Each name is scored by the free model where the call wrote its own, and
    the scores are normalised over ``names``. None with fewer than two names.
    """
    found = NAME_VALUE.search(text)
    if found is None or len(names) < 2:
        return None
    chosen = text[found.end() :].split('"', 1)[0]
    if chosen not in names:
        return None
    head = text[: found.end()]
    tails = [engine.tokenize(head + name + '"', special=False) for name in names]
    shared = 0  # tokens every tail starts with (each keeps at least one to score)
    while shared < min(map(len, tails)) - 1 and len({t[shared] for t in tails}) == 1:
        shared += 1
    scores = np.array(
        [continuation_logprobs(engine, [*prefilled, *t[:shared]], t[shared:]).sum() for t in tails],
        dtype=np.float64,
    )
    normalised = scores - np.logaddexp.reduce(scores)
    return chosen, {name: float(v) for name, v in zip(names, normalised, strict=True)}


def tool_call_message(model: str, call_text: str) -> AIMessageChunk:
    """The chunk carrying the call(s) in ``call_text`` (one call, or a JSON array of calls)."""
    try:
        parsed = json.loads(call_text, strict=False)
        found = (
            [parse_tool_call(json.dumps(c)) for c in parsed]
            if isinstance(parsed, list)
            else [parse_tool_call(call_text)]
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelOutputError(
            f"{model} produced a tool call that does not parse: {call_text!r}",
            hint="the call outgrew its token budget; give the tool fewer or "
            "shorter (maxLength) arguments",
        ) from exc
    return AIMessageChunk(
        content="",
        tool_call_chunks=[
            tool_call_chunk(
                name=call["name"],
                args=json.dumps(call["args"], ensure_ascii=False),
                id=call["id"] or new_tool_call_id(),
                index=i,
            )
            for i, call in enumerate(found)
        ],
    )
