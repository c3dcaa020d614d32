"""Finding sensitive values in text: Presidio's analyzer and collab's own recognizers.

Presidio runs without a statistical NLP model (a blank spaCy pipeline): its
pattern recognizers with checksums and context (cards, IBANs, phone numbers
through ``phonenumbers``, emails, national ids, IPs, URLs, dates) plus collab's
recognizers for addresses, secrets, phones in words, written dates, and people's
names (``collab.privacy.names``). Nothing leaves the machine to find them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from collab.privacy.kinds import ENTITIES, KIND_OF, KINDS, Kind, check_kinds
from collab.privacy.words import zipf

MIN_SCORE = 0.3  # below this Presidio is guessing (a bare number as a driver's licence)


@dataclass(frozen=True)
class Finding:
    kind: Kind
    text: str
    start: int
    end: int


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    """Presidio's analyzer over a blank English pipeline, with collab's recognizers added."""
    import spacy
    import tldextract.tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    from collab.privacy.names import NameRecognizer
    from collab.privacy.recognizers import recognizers

    class BlankEnglish(SpacyNlpEngine):  # tokens only: no model to download
        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]

    # the e-mail recognizer checks domains against the public suffix list: the copy
    # that ships with tldextract, never a download
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)  # other languages skipped
    engine = BlankEnglish(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    for recognizer in [*recognizers(), NameRecognizer()]:
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])


def _known_names(names: Sequence[str]) -> Any:
    from presidio_analyzer import PatternRecognizer

    return PatternRecognizer(supported_entity="NAME", deny_list=list(names), name="given names")


_NUMBER_BEFORE = re.compile(r"(?:^|(?<=[\s,(]))\d{1,6}[A-Za-z]?[ \t]+$")
_NUMBER_AFTER = re.compile(r"^,?[ \t]+\d{1,6}[A-Za-z]?(?=[\s,.)]|$)")
# the street of a crossing before the address: "at Catalina and 4010 Rockford Road"
_CROSSING_BEFORE = re.compile(
    r"(?:\bat|\bwith|:)[ \t]+([^\W\d_][\w'’-]*(?:[ \t]+[^\W\d_][\w'’-]*)?[ \t]+and[ \t]+)$",
    re.IGNORECASE,
)
# a word of the town, region, country or postcode after an address on its line
_PLACE_AFTER = re.compile(r"(?:,?[ \t]+|,)([^\W_][\w'’.()-]*)")
_PLACE_WORDS = 4
COMMON_WORD = 5.5  # zipf: "I", "The", "Thanks" end an address; "Canada" (5.0) does not


def _place_after(text: str, end: int) -> int:
    """Where an address ending at ``end`` really ends: over a town with its region,
    country or postcode after it on its line ("…Apt. 883, Hespeler Canada 12345"). A
    lone town is left alone: it may be where the person is, not the address."""
    words, last = 0, end
    for _ in range(_PLACE_WORDS):
        match = _PLACE_AFTER.match(text, last)
        if not match:
            break
        word = match.group(1).rstrip(".")
        if not word or not (word.isdigit() or word[0].isupper()) or zipf(word) >= COMMON_WORD:
            break
        words += 2 if word.isdigit() else 1
        last = match.start(1) + len(word)
    return last if words >= 2 else end


def _joined_addresses(text: str, found: list[Finding]) -> list[Finding]:
    """Address spans grown over the house number or postcode beside them, and joined
    where only spaces or a comma part them on one line."""
    out: list[Finding] = []
    for f in found:
        start, end = f.start, f.end
        if f.kind == "address":
            before = _NUMBER_BEFORE.search(text[max(0, start - 12) : start])
            start -= len(before.group(0)) if before else 0
            after = _NUMBER_AFTER.search(text[end : end + 12])
            end += len(after.group(0)) if after else 0
            end = _place_after(text, end)
            crossing = _CROSSING_BEFORE.search(text[max(0, start - 60) : start])
            start -= len(crossing.group(1)) if crossing else 0
            last = out[-1] if out else None
            if last and last.kind == "address" and re.fullmatch(r"[ \t,]*", text[last.end : start]):
                out.pop()
                start = last.start
        if out and start < out[-1].end:  # grown into the span before: keep that one's end
            start = out[-1].end
        value = text[start:end].strip(" \t,")
        if value:
            start = text.index(value, start)
            out.append(Finding(f.kind, value, start, start + len(value)))
    return out


def _towns_dropped(text: str, found: list[Finding]) -> list[Finding]:
    """Without the "names" that are an address's town: a name closing the line of an
    address after a comma ("…Rd 5, Kolding"), or alone on the line below an address
    (with its postcode, if any). Towns are no person's name, and alone no address."""
    out: list[Finding] = []
    for f in found:
        previous = out[-1] if out else None
        if f.kind == "name" and previous is not None and previous.kind == "address":
            between = text[previous.end : f.start]
            after = text[f.end :].split("\n", 1)[0]
            line_ends = re.fullmatch(r"[ \t]*(?:\d{4,6}(?:[ \t]+[A-Z]{2})?)?[ \t.]*", after)
            if line_ends and re.fullmatch(r",[ \t]*|[ \t,]*\n[ \t]*", between):
                continue
        out.append(f)
    return out


def _implausible(kind: Kind, value: str) -> bool:
    """Matches a recognizer makes that are not the kind: "Co.Ltd" is no web address
    (top-level domains are written in lower case in running text)."""
    if kind == "url" and "/" not in value:
        return not value.rsplit(".", 1)[-1].islower()
    return False


class Detector:
    """Finds the enabled ``kinds`` of sensitive values; ``names``: names known in advance.

    Thread-safe; results are cached per text, so a conversation's earlier messages
    cost nothing the next turn.
    """

    def __init__(self, kinds: Iterable[str] = KINDS, names: Sequence[str] = ()) -> None:
        self.kinds = check_kinds(kinds)
        self.names = tuple(n for n in names if n.strip())
        self._entities = [e for k in self.kinds for e in ENTITIES[k]]
        self._extra = [_known_names(self.names)] if self.names and "name" in self.kinds else []
        self._cache: OrderedDict[str, list[Finding]] = OrderedDict()
        self._lock = threading.Lock()

    def find(self, text: str) -> list[Finding]:
        """Sensitive spans in ``text``, left to right, not overlapping."""
        if not text.strip() or not self._entities:
            return []
        with self._lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return self._cache[text]
        found = self._analyze(text)
        with self._lock:
            self._cache[text] = found
            if len(self._cache) > 4096:
                self._cache.popitem(last=False)
        return found

    def _analyze(self, text: str) -> list[Finding]:
        results = _analyzer().analyze(
            text,
            language="en",
            entities=self._entities,
            score_threshold=MIN_SCORE,
            ad_hoc_recognizers=self._extra or None,
        )
        spans = [
            (r.start, r.end, KIND_OF[r.entity_type], r.score)
            for r in results
            if r.entity_type in KIND_OF
            and not _implausible(KIND_OF[r.entity_type], text[r.start : r.end])
        ]
        chosen: list[Finding] = []
        # the longest span wins an overlap, then the surest; spans of one kind that
        # overlap are joined ("12 Main Street Apt." and "Apt. 4")
        for start, end, kind, _ in sorted(spans, key=lambda s: (s[0] - s[1], -s[3], s[0])):
            same = [f for f in chosen if f.kind == kind and start <= f.end and f.start <= end]
            if any(start < f.end and f.start < end for f in chosen if f not in same):
                continue
            for f in same:
                chosen.remove(f)
            start, end = min([start, *(f.start for f in same)]), max([end, *(f.end for f in same)])
            value = text[start:end].strip()
            if value:
                start += text[start:end].index(value)
                chosen.append(Finding(kind, value, start, start + len(value)))
        return _towns_dropped(text, _joined_addresses(text, sorted(chosen, key=lambda f: f.start)))
