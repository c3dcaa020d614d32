"""One map of sensitive values per conversation: redact what leaves, restore what returns.

A ``Vault`` learns the values in every part of a conversation (system, user and
assistant text, tool-call arguments, tool results, tool and schema descriptions)
and gives each one placeholder (``[NAME_1]``), numbered by first appearance, so a
thread's history gets the same placeholders on every turn. A value is replaced in
every case and spacing it is written in; a person's name also part by part.
Restoring accepts placeholders the way models mangle them (``PHONE_1``,
``[phone 1]``, a ``[PHONE_1`` cut by the token limit); what cannot be restored
without guessing is dropped and reported by ``unresolved``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from collab.privacy.detect import Detector, Finding
from collab.privacy.kinds import KINDS
from collab.privacy.words import zipf

_KIND = "|".join(k.upper() for k in KINDS)
# a placeholder as written, or as a model mangles it: [NAME_1], NAME_1, [name 1], [NAME_1
_MANGLED = re.compile(rf"\[\s*({_KIND})[ _-]?(\d+)\s*\]?|\b({_KIND})_(\d+)\b", re.IGNORECASE)
_OPENING = re.compile(r"\[(?:[A-Z_]{0,14}\d{0,4})$")  # what a placeholder begins with
# keys of tool and response schemas whose values are text a user may have written
_SCHEMA_TEXT = {"description", "examples", "example", "default", "enum", "const", "title"}


def _pattern(value: str) -> str:
    words = [re.escape(w) for w in value.split()]
    return r"(?<![^\W_])" + r"\s+".join(words) + r"(?![^\W_])"


class Vault:
    """Sensitive values of one conversation and their placeholders."""

    def __init__(self, detector: Detector, *, enabled: bool = True) -> None:
        self.detector = detector
        self.enabled = enabled  # False: nothing is replaced (what is sent is still audited)
        self.originals: dict[str, str] = {}  # placeholder -> the value as first written
        self._keys: dict[str, str] = {}  # value in lower case, spaces squeezed -> placeholder
        self.kinds: Counter[str] = Counter()
        self._regex: re.Pattern[str] | None = None

    # ---- learning ----------------------------------------------------------------------

    def learn(self, text: str) -> list[Finding]:
        found = self.detector.find(text)
        for f in found:
            self._add(f.kind, f.text)
            if f.kind == "name":  # "Anika" alone later is Anika Sorensen's first name
                for part in f.text.split():
                    if len(part) > 2 and not part.endswith(".") and zipf(part) < 4.5:
                        self._add("name", part)
        return found

    def learn_messages(self, messages: Sequence[BaseMessage]) -> None:
        for message in messages:
            for text in _texts(message):
                self.learn(text)

    def learn_schema(self, schema: Any) -> None:
        """Values in tool or response schemas' descriptions, examples and defaults."""

        def learn(text: str) -> str:
            self.learn(text)
            return text

        _walk_schema(schema, learn)

    def _add(self, kind: str, value: str) -> None:
        key = " ".join(value.lower().split())
        if key in self._keys:
            return
        count = sum(1 for p in self.originals if p.startswith(f"[{kind.upper()}_")) + 1
        placeholder = f"[{kind.upper()}_{count}]"
        self._keys[key] = placeholder
        self.originals[placeholder] = value
        self.kinds[kind] += 1
        self._regex = None

    @property
    def found(self) -> bool:
        return bool(self.originals)

    # ---- what leaves ---------------------------------------------------------------------

    def redact(self, text: str) -> str:
        if not self.enabled or not self._keys:
            return text
        if self._regex is None:
            values = sorted(self._keys, key=len, reverse=True)
            self._regex = re.compile("|".join(_pattern(v) for v in values), re.IGNORECASE)
        return self._regex.sub(lambda m: self._keys[" ".join(m.group(0).lower().split())], text)

    def redact_json(self, value: Any) -> Any:
        return _map_strings(value, self.redact)

    def redact_schema(self, schema: Any) -> Any:
        return _walk_schema(schema, self.redact)

    def redact_messages(self, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        return [_map_message(m, self.redact, self.redact_json) for m in messages]

    # ---- what comes back -----------------------------------------------------------------

    def restore(self, text: str) -> str:
        def put_back(m: re.Match[str]) -> str:
            kind, number = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            original = self.originals.get(f"[{kind.upper()}_{number}]")
            if original is None:
                return m.group(0)
            if m.group(0).startswith("[") and not m.group(0).endswith("]"):
                # "[PHONE_1" cut short: only when no longer placeholder begins the same way
                longer = [p for p in self.originals if p.startswith(f"[{kind.upper()}_{number}")]
                if len(longer) > 1:
                    return m.group(0)
            return original

        return _MANGLED.sub(put_back, text) if self.originals else text

    def restore_json(self, value: Any) -> Any:
        return _map_strings(value, self.restore)

    def restore_arguments(self, args: str) -> str:
        """Tool-call arguments (JSON text) with their values restored."""
        try:
            return json.dumps(self.restore_json(json.loads(args)), ensure_ascii=False)
        except json.JSONDecodeError:
            return self.restore(args)

    @staticmethod
    def unresolved(restored: str) -> list[str]:
        """Placeholders left in a restored text: ones the model made up or garbled."""
        return [m.group(0) for m in _MANGLED.finditer(restored)]

    def pending(self, text: str) -> int:
        """Where a placeholder may be cut off at the end of ``text`` (its start), else len."""
        m = _OPENING.search(text[-20:])
        return len(text) - len(m.group(0)) if m else len(text)

    def finish(self, held: str) -> tuple[str, list[str]]:
        """The end of an answer that stopped inside a placeholder: restored when only one
        placeholder begins that way, else dropped; and what was dropped."""
        text = self.restore(held)
        opening = _OPENING.search(text)
        if not opening or opening.group(0) == "[":  # a bracket alone says nothing
            return text, []
        cut = opening.group(0).upper()
        matches = [p for p in self.originals if p.startswith(cut)]
        if len(matches) == 1:
            return text[: opening.start()] + self.originals[matches[0]], []
        return text[: opening.start()], [cut]


def _texts(message: BaseMessage) -> list[str]:
    content = message.content
    blocks = [content] if isinstance(content, str) else content
    texts = [b if isinstance(b, str) else str(b.get("text", "")) for b in blocks]
    if isinstance(message, AIMessage):
        for call in message.tool_calls:
            texts += strings_in(call["args"])
    return texts


def strings_in(value: Any) -> list[str]:
    """Every string in a JSON value, depth first."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [s for v in items for s in strings_in(v)]


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value


def _walk_schema(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` with ``fn`` applied to the user-written text in it (descriptions, examples)."""
    if isinstance(value, dict):
        return {
            k: _map_strings(v, fn) if k in _SCHEMA_TEXT else _walk_schema(v, fn)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_walk_schema(v, fn) for v in value]
    return value


def _map_message(
    message: BaseMessage, text: Callable[[str], str], args: Callable[[Any], Any]
) -> BaseMessage:
    content: Any = message.content
    if isinstance(content, str):
        content = text(content)
    else:
        content = [
            {**b, "text": text(b["text"])} if isinstance(b, dict) and b.get("type") == "text"
            else text(b) if isinstance(b, str) else b
            for b in content
        ]  # fmt: skip
    update: dict[str, Any] = {"content": content}
    if isinstance(message, AIMessage) and message.tool_calls:
        update["tool_calls"] = [{**c, "args": args(c["args"])} for c in message.tool_calls]
        update["additional_kwargs"] = {
            k: v for k, v in message.additional_kwargs.items() if k != "tool_calls"
        }
    return message.model_copy(update=update)
