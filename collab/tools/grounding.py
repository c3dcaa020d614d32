"""Whether a tool call's arguments come from the conversation.

Small models fill optional parameters with plausible inventions: a team for a
player's career stats, a maker for "an acoustic instrument", a list of years
nobody asked for. An optional argument whose value has nothing in common with
the conversation (the user's words, earlier answers, tool results) is dropped,
so the tool uses its own default. In a list, the items the conversation does
not mention are dropped and the rest kept. Required arguments, booleans and
objects are never touched.

A string is grounded when one of its words (three characters or more, not a
stop word; any word when all are shorter, as in "Wi-Fi") appears in the
conversation; a number when the conversation writes it, in digits or as a word
up to twenty, or as a percentage of it.

A value that only stands for one, the name of a type or of the parameter
(``type="string"``), is refused as invalid: the call is repaired or escalated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.messages.tool import ToolCall

from collab.messages import text_content

_WORD = re.compile(r"[^\W_]+")
# "1,000,000.5" is one number (commas group thousands); "46.6,1.88" is two.
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_STOP = frozenset(["the", "and", "for", "with", "from", "into", "that", "this", "are", "was"])
_NUMBER_WORDS = [  # a number written as a word is found at its index
    *["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
    *["eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"],
    *["eighteen", "nineteen", "twenty"],
]


@dataclass(frozen=True)
class Conversation:
    """What a conversation says, in the forms that arguments are checked against."""

    words: frozenset[str]
    numbers: frozenset[float]

    @classmethod
    def of(cls, messages: Sequence[BaseMessage]) -> Conversation:
        text = " ".join(text_content(m.content) for m in messages).lower()
        words = frozenset(_WORD.findall(text))
        numbers = {float(n.replace(",", "")) for n in _NUMBER.findall(text)}
        numbers |= {float(i) for i, w in enumerate(_NUMBER_WORDS) if w in words}
        return cls(words, frozenset(numbers))

    def mentions(self, value: Any) -> bool:
        if isinstance(value, bool):
            return True
        if isinstance(value, int | float):
            return any(
                abs(abs(value) * scale - n) < 1e-9 for n in self.numbers for scale in (1, 100)
            )
        if isinstance(value, str):
            words = set(_WORD.findall(value.lower())) - _STOP
            # Short words ("of", "la") say little, unless they are all there is ("Wi-Fi").
            words = {w for w in words if len(w) >= 3} or words
            numbers = [float(n.replace(",", "")) for n in _NUMBER.findall(value)]
            if not words and not numbers:
                return True  # nothing to check ("", punctuation)
            return bool(words & self.words) or any(self.mentions(n) for n in numbers)
        return True  # objects and null are the model's structure, not a value to look up


def drop_ungrounded(
    call: ToolCall, schema: dict[str, Any], conversation: Conversation
) -> tuple[ToolCall, list[str]]:
    """``call`` without the optional arguments the conversation never gave, and what went."""
    required = set(schema.get("required", []))
    args: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in call["args"].items():
        if name in required:
            args[name] = value
        elif isinstance(value, list):
            kept = [v for v in value if conversation.mentions(v)]
            if kept:
                args[name] = kept
            if len(kept) < len(value):
                dropped.append(f"{name}={[v for v in value if v not in kept]!r}")
        elif conversation.mentions(value):
            args[name] = value
        else:
            dropped.append(f"{name}={value!r}")
    return ToolCall(name=call["name"], args=args, id=call.get("id"), type="tool_call"), dropped


# What a small model writes where it copies the schema instead of the user: a type's name.
_PLACEHOLDERS = frozenset(
    {"string", "str", "integer", "int", "number", "float", "boolean", "bool", "array", "object"}
)


def placeholder(call: ToolCall, schema: dict[str, Any], conversation: Conversation) -> str | None:
    """What is wrong when an argument of ``call`` stands for a value instead of being one.

    A string that is a JSON type's name or the parameter's own name (``type="string"``,
    ``city="city"``) is refused, unless the parameter's enum allows it or the
    conversation says it. None when no argument is such a stand-in.
    """
    properties = schema.get("properties", {})
    for name, value in call["args"].items():
        if not isinstance(value, str):
            continue
        word = value.strip().lower()
        if word not in _PLACEHOLDERS and word != name.lower():
            continue
        if value in properties.get(name, {}).get("enum", ()) or conversation.mentions(word):
            continue
        return f"{name}={value!r} stands for a value; give the value the user means"
    return None
