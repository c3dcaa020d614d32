"""Privacy: find sensitive spans, and keep them from reaching a remote model.

``find_sensitive`` spots emails, phone numbers, card numbers (Luhn-checked),
IBANs (mod-97-checked), national id numbers and names given by the caller.
``RemoteGate`` wraps the remote model: every message is redacted with
placeholders before it leaves, placeholders in the answer are restored
locally, and the trace keeps an audit of exactly what was sent.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from threading import Event
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict, Field

from collab.messages import as_chunk, to_openai_messages
from collab.models.base import Options, Stop, StreamFirstChatModel
from collab.trace import TRACE_KEY, Trace

Kind = Literal["email", "phone", "card", "iban", "national_id", "name"]


@dataclass(frozen=True)
class Finding:
    kind: Kind
    text: str
    start: int
    end: int


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    s = text.replace(" ", "")
    moved = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


_DETECTORS: list[tuple[Kind, re.Pattern[str]]] = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")),
    ("card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")),
    # US social security, UK national insurance, French INSEE numbers
    (
        "national_id",
        re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b[A-Z]{2}\d{6}[A-D]\b|\b[12]\d{12}(?:\d{2})?\b"),
    ),
    (
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
            r"\d{2,4}(?:[ .-]?\d{2,4}){2,4}(?!\w)"
        ),
    ),
]
_NAME_CUE = re.compile(
    r"(?:[Mm]y name is|[Nn]ame:|I am|I'm|[Cc]ustomer:?|[Pp]atient:?|[Dd]ear)\s+"
    r"((?:[A-Z][a-z'-]+)(?:\s+[A-Z][a-z'-]+){0,2})"
)


def find_sensitive(text: str, names: Sequence[str] = ()) -> list[Finding]:
    """Sensitive spans in ``text``, left to right, not overlapping.

    ``names``: people's names given by the caller; names introduced in the text
    ("my name is ...", "Customer: ...", "Dear ...") are found too.
    """
    found: list[Finding] = []
    taken: list[tuple[int, int]] = []

    def add(kind: Kind, start: int, end: int) -> None:
        if any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        found.append(Finding(kind, text[start:end], start, end))

    for kind, pattern in _DETECTORS:
        for m in pattern.finditer(text):
            value = m.group(0)
            digits = re.sub(r"\D", "", value)
            if kind == "card" and not _luhn(digits):
                continue
            if kind == "iban" and not _iban_ok(value):
                continue
            if kind == "phone" and len(digits) < 8:
                continue
            add(kind, m.start(), m.end())
    introduced = [m.group(1) for m in _NAME_CUE.finditer(text)]
    for name in {*names, *introduced}:
        # the full name, then each part on its own ("Ms Smith", "Alice")
        for part in [name, *(p for p in name.split() if len(p) > 2)]:
            for m in re.finditer(rf"\b{re.escape(part)}\b", text):
                add("name", m.start(), m.end())
    return sorted(found, key=lambda f: f.start)


@dataclass
class Redactor:
    """Replaces sensitive spans with stable placeholders, and puts them back."""

    names: Sequence[str] = ()
    enabled: bool = True  # False: pass text through (the gate still audits what is sent)
    originals: dict[str, str] = field(default_factory=dict)  # placeholder -> original
    findings: list[Finding] = field(default_factory=list)

    def placeholder(self, finding: Finding) -> str:
        for key, value in self.originals.items():
            if value == finding.text:
                return key
        count = sum(1 for k in self.originals if k.startswith(f"[{finding.kind.upper()}_"))
        key = f"[{finding.kind.upper()}_{count + 1}]"
        self.originals[key] = finding.text
        return key

    def redact_text(self, text: str) -> str:
        if not self.enabled:
            return text
        found = find_sensitive(text, self.names)
        self.findings.extend(found)
        out, last = [], 0
        for f in found:
            out += [text[last : f.start], self.placeholder(f)]
            last = f.end
        return "".join([*out, text[last:]])

    def redact(self, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        redacted = []
        for message in messages:
            content: Any = message.content
            if isinstance(content, str):
                content = self.redact_text(content)
            else:
                content = [
                    {**b, "text": self.redact_text(b["text"])}
                    if isinstance(b, dict) and b.get("type") == "text"
                    else self.redact_text(b)
                    if isinstance(b, str)
                    else b
                    for b in content
                ]
            redacted.append(message.model_copy(update={"content": content}))
        return redacted

    def restore(self, text: str) -> str:
        for key, value in self.originals.items():
            text = text.replace(key, value)
        return text

    def pending(self, text: str) -> int:
        """Where a placeholder may be cut off at the end of ``text`` (its start), else len."""
        start = text.rfind("[")
        if start != -1 and "]" not in text[start:] and len(text) - start <= 24:
            return start
        return len(text)


class RemoteGate(StreamFirstChatModel):
    """A remote model behind redaction: nothing sensitive in, originals restored out.

    The trace of each call gains ``extra["remote_audit"]``: the messages exactly
    as sent, and the kinds of what was redacted (never the values).
    """

    inner: BaseChatModel
    redactor: Redactor = Field(default_factory=Redactor)
    model: str = ""
    model_config = ConfigDict(arbitrary_types_allowed=True)

    def model_post_init(self, context: Any) -> None:
        self.model = self.model or str(getattr(self.inner, "model", type(self.inner).__name__))

    @property
    def _llm_type(self) -> str:
        return "collab-remote-gate"

    def _outgoing(self, messages: list[BaseMessage]) -> tuple[list[BaseMessage], dict[str, Any]]:
        before = len(self.redactor.findings)
        sent = self.redactor.redact(messages)
        kinds: dict[str, int] = {}
        for f in self.redactor.findings[before:]:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        return sent, {"messages": to_openai_messages(sent), "redacted": kinds}

    def _restored(
        self, chunk: AIMessageChunk, audit: dict[str, Any], held: list[str]
    ) -> AIMessageChunk:
        """``chunk`` with placeholders restored; text that may be half a placeholder is held."""
        meta = dict(chunk.response_metadata or {})
        if TRACE_KEY in meta:
            trace = Trace.from_metadata(meta)
            trace.extra.setdefault("remote_audit", []).append(audit)
            meta[TRACE_KEY] = trace.to_metadata()
        content: Any = chunk.content
        if isinstance(content, str):
            text = held.pop() + content if held else content
            cut = self.redactor.pending(text)
            if cut < len(text):
                held.append(text[cut:])
            content = self.redactor.restore(text[:cut])
        return chunk.model_copy(update={"content": content, "response_metadata": meta})

    def _rest(self, held: list[str]) -> Iterator[ChatGenerationChunk]:
        if held:
            rest = AIMessageChunk(content=self.redactor.restore(held[0]))
            yield ChatGenerationChunk(message=rest)

    def _run(
        self, messages: list[BaseMessage], stop: Stop, options: Options, cancel: Event
    ) -> Iterator[ChatGenerationChunk]:
        sent, audit = self._outgoing(messages)
        held: list[str] = []
        for chunk in self.inner.stream(sent, stop=stop, **options):
            yield ChatGenerationChunk(message=self._restored(as_chunk(chunk), audit, held))
        yield from self._rest(held)

    async def _arun(
        self, messages: list[BaseMessage], stop: Stop, options: Options
    ) -> AsyncIterator[ChatGenerationChunk]:
        sent, audit = self._outgoing(messages)
        held: list[str] = []
        async for chunk in self.inner.astream(sent, stop=stop, **options):
            yield ChatGenerationChunk(message=self._restored(as_chunk(chunk), audit, held))
        for rest in self._rest(held):
            yield rest
