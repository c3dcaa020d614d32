"""People's names without a cue word: a gazetteer, word frequencies and context.

A word is taken for a name when it is a known given name or surname (Faker's name
lists for every locale it ships, about 30,000 given names and 28,000 surnames,
and the names of ``names-dataset`` that rank among the first ``NAME_RANK`` of
some country) and is not a common English word in the way it is written
(``wordfreq``): a capitalized known name mid-sentence is a name unless it is very
common ("Will", "May"); a lower-case one only when rare as a word ("devika", "rao"). Cue words
("my name is", "Dear", "Mr.") mark the next words as a name whatever they are.
A name found grows over the capitalized words and initials beside it, so
"Leigha C. Mackay" is one name when only "Mackay" is known.

The thresholds are calibrated by ``bench/privacy.py --split dev`` on one
rendering of presidio-evaluator's templates and reported on another.
"""

from __future__ import annotations

import gzip
import importlib
import itertools
import logging
import os
import pickle
import pkgutil
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from presidio_analyzer import EntityRecognizer, RecognizerResult

from collab.config import load_settings
from collab.privacy.words import zipf

# zipf frequency (log10 per billion words) above which a written form is a common word
CAPITALIZED_COMMON = 4.5  # a capitalized known name mid-sentence: "Maria" (4.3) yes, "Will" no
SENTENCE_START_COMMON = 4.5  # at the start of a sentence, where every word is capitalized
LOWERCASE_COMMON = 3.5  # a lower-case known name: "rao" (3.3) yes, "mark" (5.1) no
UNKNOWN_COMMON = 3.0  # an unknown word next to a name, or after a cue, joins it below this
PAIR_COMMON = 4.0  # a word after a known name, both capitalized, is its surname below this
RARE_PAIR = 2.0  # two capitalized words both rarer than this are taken for a name
SURNAME_COMMON = 2.0  # an unknown capitalized word with a surname's ending is one below this
NAME_RANK = 1000  # a name of names-dataset is known when among this many of some country's

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_CUE = re.compile(
    r"(?:\bmy name is|\bname\s*:|\bi am|\bi'm|\bcall me|\bthis is|\bsigned|\bregards,?|\bdear|"
    r"\bhi|\bhello|\bhey|\bthanks|\bthank you|\bsincerely|\bcustomer|\bpatient|\bclient|"
    r"\bemployee|\btenant|\bguest|\bpassenger|\bapplicant|\battn|\bmr|\bmrs|\bms|\bmiss|\bmx|\bdr|\bprof|\bsir|\bmadam)"
    r"[.:]?\s+$",
    re.IGNORECASE,
)
# what comes before a place ("flights from Paris"), with no cue for a person
_PLACE_CUE = re.compile(
    r"\b(?:in|at|from|near|via|into|across|around|outside|city|town|village)\s+$"
)
# what comes before a place of several words ("grew up in Kostelec nad Sázavou")
_PLACES_CUE = re.compile(
    r"(?:\bin|\boriginally from|\bmoved (?:here )?from|\b(?:city|town|village)(?: of)?:?)\s+$",
    re.IGNORECASE,
)
# what follows a company's name, not a person's; every word of it capitalized
_SUFFIXES = (
    r"inc|corp|corporation|co|company|ltd|llc|plc|"
    r"sa|ag|gmbh|nv|bv|ab|as|oy|spa|srl|holdings?|group|limited|partners|ventures|"
    r"enterprises?|industries|industrie|international|technology|technologies|energy|"
    r"insurance|resources|bank|capital|systems|solutions|services"
)
_COMPANY = re.compile(
    rf"^(?:['’]s)?[ \t,]*((?:(?:&|[^\W\d_][\w&.-]*)[ \t]+){{0,2}}(?:{_SUFFIXES}))\b",
    re.IGNORECASE,
)


def _company(rest: str) -> bool:
    """Whether ``rest`` opens with a company's suffix ("& Co", "Holdings PLC", "Inc.")."""
    match = _COMPANY.match(rest)
    return match is not None and all(w[0] == "&" or w[0].isupper() for w in match.group(1).split())


_STRONG_CUE = re.compile(r"(?:my name is|name\s*:|call me|i am|i'm|dear)\s+$", re.IGNORECASE)
# a period ends a sentence unless it ends an initial or a title ("C.", "Mr.")
_SENTENCE_START = re.compile(
    r"(?:^|(?<!\b[A-Z])(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)\.|[!?:;\n\"“(\[]|\\n)\s*$"
)
# endings of surnames in many languages: an unknown capitalized word with one is a surname
_SURNAME_ENDING = re.compile(
    r"(?:ov|ova|ev|eva|ova|in|ina|ski|ska|sky|cki|cka|wicz|ić|vić|ovic|evic|enko|chuk|yuk|"
    r"escu|eanu|sson|sen|dóttir|dottir|ini|elli|etti|opoulos|akis|idis|yan|oglu|oğlu|"
    r"shvili|dze|berg|stein|mann|ová|ský|ná|ak|ek|ík|ez|ovich|ovna|ishvili)$"
)
_MONTHS_AND_DAYS = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "monday", "tuesday", "wednesday", "thursday",
    "friday", "saturday", "sunday",
}  # fmt: skip


@lru_cache(maxsize=1)
def _gazetteer() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(known names, words never taken for names, the names of Faker's lists), lower-cased.
    A lower-case word is taken for a name only from Faker's lists: names-dataset holds
    many words too ("merges")."""
    import faker.providers.person as people
    from faker.providers.address.en_US import Provider as Addresses

    names: set[str] = set()
    for module in pkgutil.iter_modules(people.__path__):
        try:
            provider = importlib.import_module(f"{people.__name__}.{module.name}").Provider
        except (ImportError, AttributeError):
            continue
        for attr in ("first_names", "first_names_male", "first_names_female", "last_names"):
            value = provider.__dict__.get(attr)
            if isinstance(value, (list, tuple, set, dict)):
                names.update(v.lower() for v in value if isinstance(v, str))
    never = {w.lower() for country in Addresses.countries for w in country.split()}
    never |= _MONTHS_AND_DAYS | set(re.findall(r"[a-z]+", _SUFFIXES))
    listed = frozenset(names - never)
    return listed | (frozenset(_ranked_names()) - never), frozenset(never), listed


def _ranked_names() -> list[str]:
    """The given names and surnames of ``names-dataset`` among the first ``NAME_RANK`` of
    some country. The package's tables take 2 GB to load: the list is written to the
    cache once and read from there after."""
    path = load_settings().cache_dir / "privacy" / f"names-rank-{NAME_RANK}.txt"
    if not path.is_file():
        import names_dataset

        logging.getLogger(__name__).info("collab: indexing names-dataset once into %s", path)

        tables = Path(names_dataset.__file__).parent / "v3"
        keep: set[str] = set()
        for part in ("first_names", "last_names"):
            with gzip.open(tables / f"{part}.pkl.gz") as file:
                table = pickle.load(file)  # the installed package's own data
            keep.update(
                name.lower()
                for name, info in table.items()
                if min((info.get("rank") or {}).values(), default=NAME_RANK + 1) <= NAME_RANK
            )
            del table
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.part")
        partial.write_text("\n".join(sorted(keep)), encoding="utf-8")
        partial.replace(path)
    return path.read_text(encoding="utf-8").split("\n")


class _Word:
    def __init__(self, match: re.Match[str], text: str) -> None:
        self.start, self.end = match.start(), match.end()
        self.text = match.group(0)
        lower = self.text.lower()
        if lower.endswith(("'s", "’s")):
            self.end -= 2
            lower = lower[:-2]
        everyone, never, listed = _gazetteer()
        known = everyone if match.group(0)[:1].isupper() else listed
        parts = re.split(r"['’-]", lower)
        self.never = lower in never
        self.known = not self.never and (lower in known or any(p in known for p in parts))
        self.capitalized = self.text[0].isupper()
        # an initial: "C." or a lone capital before a capitalized word ("Edmonda G Mazzanti")
        after = text[self.end : self.end + 3]
        self.initial = (
            len(self.text) == 1
            and self.capitalized
            and (
                after[:1] == "."
                or (self.text not in "AI" and after[:1] == " " and after[1:2].isupper())
            )
        )
        if self.initial and after[:1] == ".":
            self.end += 1
        self.zipf = zipf(lower)
        self.before = text[max(0, self.start - 24) : self.start]
        self.sentence_start = bool(_SENTENCE_START.search(self.before))

    def seed(self) -> bool:
        """Whether this word alone says "a name"."""
        if self.never or len(self.text) < 2:
            return False
        if _STRONG_CUE.search(self.before):
            return self.zipf < (CAPITALIZED_COMMON if self.known else UNKNOWN_COMMON)
        if self.known:
            if self.text.isupper():  # capitals: only as a pair of known names (ZOË MÜLLER)
                return False
            if not self.capitalized:
                return self.zipf < LOWERCASE_COMMON
            limit = SENTENCE_START_COMMON if self.sentence_start else CAPITALIZED_COMMON
            return self.zipf < limit
        if self.capitalized and _CUE.search(self.before):
            return self.zipf < UNKNOWN_COMMON
        return (
            self.capitalized
            and self.zipf < SURNAME_COMMON
            and bool(_SURNAME_ENDING.search(self.text.lower()))
        )

    def joins(self) -> bool:
        """Whether this word continues a name beside it."""
        if self.initial:
            return True
        if self.never or not self.capitalized:
            return False
        return self.zipf < (CAPITALIZED_COMMON if self.known else PAIR_COMMON)


def _between(text: str, left: _Word, right: _Word) -> bool:
    """Whether only a space (or an initial's period) separates two words of one name."""
    gap = text[left.end : right.start]
    return gap in (" ", "") or (left.initial and gap.strip() == "")


def find_names(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each name in ``text``."""
    words = [_Word(m, text) for m in _WORD.finditer(text)]
    seeds = [w.seed() for w in words]
    for i, (word, after) in enumerate(itertools.pairwise(words)):
        # two capitalized words that make a name together: a known one that opens a
        # sentence before a rare one ("Victor Trudeau"), or two rare ones ("Peterke Barabás")
        pair = _between(text, word, after) and word.capitalized and after.capitalized
        if pair and not word.never and not after.never and not seeds[i]:
            capitals = any(len(w.text) > 1 and w.text.isupper() for w in (word, after))
            if capitals and not (word.known and after.known):
                continue
            if (word.joins() and word.known and (after.joins() or after.zipf < PAIR_COMMON)) or max(
                word.zipf, after.zipf
            ) < RARE_PAIR:
                seeds[i] = True
    i = 0
    while i < len(words):
        if not seeds[i]:
            i += 1
            continue
        first = last = i
        while (
            first > 0
            and _between(text, words[first - 1], words[first])
            and (seeds[first - 1] or words[first - 1].joins())
            and not words[first].sentence_start
        ):
            first -= 1
        while (
            last + 1 < len(words)
            and _between(text, words[last], words[last + 1])
            and (seeds[last + 1] or words[last + 1].joins())
        ):
            last += 1
        start, end = words[first].start, words[last].end
        line = text[
            text.rfind("\n", 0, start) + 1 : (text.find("\n", end) + 1 or len(text) + 1) - 1
        ]
        one_word = first == last
        alone = one_word and line.strip() == text[start:end] and "\n" in text.strip()
        before = text[max(0, start - 24) : start]
        place = _PLACE_CUE.search(before) if one_word else _PLACES_CUE.search(before)
        last_word = " " + words[last].text if first < last else ""
        company = _company(text[end:]) or _company(last_word)
        if not company and not alone and not place:
            yield start, end
        i = last + 1


class NameRecognizer(EntityRecognizer):
    """Presidio recognizer for ``NAME``: people's names, with or without a cue."""

    def __init__(self) -> None:
        super().__init__(supported_entities=["NAME"], name="collab names")

    def load(self) -> None:
        _gazetteer()

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        return [RecognizerResult("NAME", start, end, 0.7) for start, end in find_names(text)]
