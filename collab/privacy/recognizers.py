"""Pattern recognizers for what Presidio does not ship: street addresses, secrets,
phone numbers written in words, written-out dates, and more national id formats.

Each is a Presidio ``PatternRecognizer`` reporting one of collab's entities
(``ADDRESS``, ``SECRET``, ``PHONE``, ``DATE``, ``NATIONAL_ID``).
"""

from __future__ import annotations

import re
from typing import Any

from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult

from collab.privacy.words import rare

# Street types, by where they stand: after the street's name ("Baker Street", "Bem
# rakpart", "Linzer Strasse"), before it ("Rue de Libya", "Via Roma"), or joined to it
# as one word ("Hauptstraße", "Thingvallastraeti").
_AFTER_NAME = (
    r"street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|"
    r"terrace|square|sq|parkway|pkwy|highway|hwy|circle|close|crescent|row|alley|trail|"
    r"gardens|grove|mews|stra(?:ss|ß)e|str|gasse|weg|platz|allee|damm|straat|laan|plein|"
    r"gracht|kade|singel|vej|gade|gata|gatan|vägen|veien|vegen|gate|stræde|allé|katu|tie|"
    r"kuja|tee|tänav|utca|út|tér|körút|rakpart|ulice|náměstí|třída|cesta|trg|sokak|cadde|"
    r"caddesi|sokağı|vegur|stræti|straeti|ulitsa|prospekt|pereulok"
)
_BEFORE_NAME = (
    r"rue|chemin|allée|impasse|quai|route|calle|avenida|av|rua|travessa|camino|paseo|plaza|"
    r"praça|rodovia|estrada|alameda|via|viale|piazza|corso|vicolo|largo|strada|ulica|ul|"
    r"aleja|al|plac|bulevardul|calea|odos|avenue|boulevard|place"
)
_JOINED = (
    r"stra(?:ss|ß)e|straat|gasse|weg|vej|gade|gatan|vägen|veien|vegen|gata|laan|katu|tie|"
    r"vegur|stræti|straeti|utca|ulica|sokak|caddesi"
)
_UNIT = r"(?:apt|apartment|suite|ste|unit|flat)\.?[ \t]*#?[ \t]*\d+\w?"
_W = r"[^\W\d_][\w'’-]*"  # one word of a street's name
_CONNECTOR = r"(?:de|del|della|di|da|do|dos|das|du|des|la|le|van|von|der|den|y|i)"
_NAME = rf"{_W}(?:[ \t]+(?:{_CONNECTOR}[ \t]+)?{_W}){{0,3}}"  # up to four words
_NUMBER = r"\d{1,6}[A-Za-z]?(?:[-/]\d{1,4})?"
_NUMBERS = rf"(?:{_NUMBER}[ \t]+){{1,2}}"

_ADDRESS = [
    # 221B Baker Street, 083 254 Damvergi Street, 8906 Linzer Strasse
    Pattern("number, name, type", rf"\b{_NUMBERS}(?:{_W}[ \t]+){{0,3}}(?:{_AFTER_NAME})\b\.?", 0.6),
    # 138 Rue de Libya, 12 Via Roma
    Pattern("number, type, name", rf"\b{_NUMBERS}(?:{_BEFORE_NAME})\.?[ \t]+{_NAME}", 0.6),
    # Via Pasquale Scura 127, ul. Korczaka Janusza 107
    Pattern("type, name, number", rf"\b(?:{_BEFORE_NAME})\.?[ \t]+{_NAME}[ \t]+{_NUMBER}\b", 0.6),
    # Linzer Strasse 69, Bem rakpart 81, Nánási út 79
    Pattern(
        "name, type, number",
        rf"\b(?:{_W}[ \t]+){{1,3}}(?:{_AFTER_NAME})\.?[ \t]+{_NUMBER}\b",
        0.6,
    ),
    # Hauptstraße 5, Thingvallastraeti 36
    Pattern("joined type, number", rf"\b{_W}(?:{_JOINED})[ \t]+{_NUMBER}\b", 0.6),
    # Metsanurga 48 street
    Pattern("name, number, type", rf"\b{_W}[ \t]+{_NUMBER}[ \t]+(?:{_AFTER_NAME})\b", 0.5),
    Pattern("unit", rf"\b{_UNIT}\b", 0.5),
    Pattern(
        "postcode after a cue",
        r"(?<=\b(?:zip|postal|post)[ \t]?(?:code)?(?:[ \t]+is)?[: \t]+)[A-Z0-9][A-Z0-9 -]{2,9}\b",
        0.6,
    ),
    Pattern("post box", r"\b(?:P\.?[ \t]?O\.?[ \t]?)?Box[ \t]+\d+\b", 0.5),
    # UK postcodes; the ZIP after a US state; a postcode closing a line ("Canada 15097")
    Pattern("uk postcode", r"(?-i:\b[A-Z]{1,2}\d[A-Z\d]?[ \t]*\d[A-Z]{2}\b)", 0.5),
    Pattern("zip after a state", r"(?-i:(?<=\b[A-Z]{2}[ \t])\d{5}(?:-\d{4})?\b)", 0.5),
    Pattern(
        "postcode ending a line",
        r"(?-i:(?<=[A-Z][\w.()]*,?[ \t])\d{4,6}(?=[ \t]*[.?!]?[ \t]*(?:\n|\\n|$)))",
        0.4,
    ),
    Pattern(
        "postcode on its own line", r"(?<=(?:^|\n|\\n)[ \t]*)\d{4,6}(?=[ \t]*(?:\n|\\n|$))", 0.4
    ),
    # the corner of Aðalstræti 49 and Mauer Parkways
    Pattern(
        "crossing",
        rf"\bcorner of[ \t]+[^\n,.?!]{{2,40}}?[ \t]+and[ \t]+{_W}(?:[ \t]+(?:{_W}|\d+)){{0,2}}",
        0.5,
    ),
]

_SECRET_CUE = (
    r"password|passwd|pwd|passcode|passphrase|pin|secret|token|api[\s_-]?key|"
    r"access[\s_-]?key|private[\s_-]?key|client[\s_-]?secret|credentials?"
)
_SECRET = [
    # the value after a cue: "password: hunter2", "my API key is sk-...", "pin 4821"
    Pattern(
        "value after a cue",
        rf"(?<=\b(?:{_SECRET_CUE})\b(?:\s+(?:is|was|=|:))?[\s:=]\s?[\"'`]?)"
        r"(?!(?:is|was|to|for|the|and|of|my|a|an)\b)[^\s\"'`,;]{4,}",
        0.7,
    ),
    Pattern("openai-style key", r"\b(?:sk|pk|rk)-(?:[A-Za-z0-9_-]{16,})", 0.9),
    Pattern("github token", r"\bgh[pousr]_[A-Za-z0-9]{20,}\b", 0.9),
    Pattern("aws key id", r"(?-i:\bA(?:KIA|SIA)[0-9A-Z]{16}\b)", 0.9),
    Pattern("slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b", 0.9),
    Pattern("jwt", r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}\b", 0.9),
    Pattern(
        "private key block",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        1.0,
    ),
    # long random-looking strings: letters and digits mixed, 24 characters or more
    Pattern(
        "long random string",
        r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{24,}\b",
        0.5,
    ),
]

_DIGIT_WORD = r"(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|double|triple)"
_PHONE = [
    # "oh two oh, seven nine four six ..." (seven digit words or more)
    Pattern("phone in words", rf"\b{_DIGIT_WORD}(?:[\s,.-]+{_DIGIT_WORD}){{6,}}\b", 0.6),
    # national and international numbers Presidio's phonenumbers regions miss
    Pattern(
        "digit groups",
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?"
        r"\d{2,5}(?:[ .-]?\d{2,5}){1,4}(?![\w-])",
        0.4,
    ),
]
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = [
    Pattern(
        "day month year", rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}\b", 0.6
    ),
    Pattern("month day year", rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b", 0.6),
    Pattern("numeric date", r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{2,4}\b", 0.5),
    Pattern(
        "iso date and time",
        r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?",
        0.7,
    ),
]
_NATIONAL_ID = [
    Pattern("us ssn shape", r"\b\d{3}-\d{2}-\d{4}\b", 0.6),
    Pattern("uk national insurance", r"(?-i:\b[A-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b)", 0.6),
    Pattern("french insee", r"\b[12]\s?\d{2}\s?\d{2}\s?\d{2}\s?\d{3}\s?\d{3}(?:\s?\d{2})?\b", 0.5),
]

_FLAGS = re.DOTALL | re.MULTILINE | re.IGNORECASE


class _StreetAndNumber(EntityRecognizer):
    """A house number beside a street's name that is no English word: "Parmova 110",
    "Jahu 85", "20090 Steinfelden" (street types unknown in the name's language)."""

    _PAIR = re.compile(
        r"(?<![\w.])(?:(\d{1,5}[a-zA-Z]?)[ \t]+)?"  # a number before,
        r"((?:[^\W\d_][\w'’-]*[ \t]+){1,2})"  # one or two words,
        r"(\d{1,5}[a-zA-Z]?)?(?![\w.,:]\d)"  # a number after
    )

    def __init__(self) -> None:
        super().__init__(supported_entities=["ADDRESS"], name="street and number")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        found = []
        for m in self._PAIR.finditer(text + " "):
            words = m.group(2).split()
            if not (m.group(1) or m.group(3)) or not all(w[0].isupper() and rare(w) for w in words):
                continue
            end = min(m.end(3) if m.group(3) else m.end(2), len(text))
            number = m.group(3) or ""
            if len(number) >= 4 and not m.group(1) and not text[end:].split("\n", 1)[0].strip():
                # a town and its postcode closing a line: only the postcode is an address
                found.append(RecognizerResult("ADDRESS", m.start(3), end, 0.45))
                continue
            found.append(RecognizerResult("ADDRESS", m.start(), end, 0.45))
        return found


class _PhoneRecognizer(PatternRecognizer):
    """Digit groups count as a phone number from six digits on; digit words always do."""

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = sum(ch.isdigit() for ch in pattern_text)
        return None if digits >= 6 or digits == 0 else False


def recognizers() -> list[EntityRecognizer]:
    """collab's pattern recognizers, one per entity."""
    return [
        _PhoneRecognizer(supported_entity="PHONE", patterns=_PHONE, global_regex_flags=_FLAGS),
        _StreetAndNumber(),
        *(
            PatternRecognizer(supported_entity=entity, patterns=patterns, global_regex_flags=_FLAGS)
            for entity, patterns in (
                ("ADDRESS", _ADDRESS),
                ("SECRET", _SECRET),
                ("DATE", _DATE),
                ("NATIONAL_ID", _NATIONAL_ID),
            )
        ),
    ]
