"""Privacy benchmark data nobody here wrote: presidio-evaluator's templates and fake people.

``sentences(seed, n)`` renders presidio-evaluator's 200-odd templates with its
FakeNameGenerator table and Faker (``PresidioSentenceFaker``); one seed is the
development split (thresholds are tuned on it), another the held-out split.
Each sample keeps its sensitive values by collab kind and its non-sensitive
slots (countries, cities, companies, nationalities, job titles), on which
over-redaction is measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from collab.privacy.kinds import Kind

SPLITS = {"dev": 1, "test": 2}
SENSITIVE: dict[str, Kind] = {
    "PERSON": "name",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "iban",
    "US_SSN": "national_id",
    "US_DRIVER_LICENSE": "national_id",
    "IP_ADDRESS": "ip",
    "DOMAIN_NAME": "url",
    "STREET_ADDRESS": "address",
    "ZIP_CODE": "address",
    "DATE_TIME": "date",
}
NOT_SENSITIVE = ("GPE", "ORGANIZATION", "NRP", "TITLE")


@dataclass
class Sample:
    text: str
    values: list[tuple[Kind, str]] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)  # non-sensitive slot values


def _is_date(value: str) -> bool:
    """A full date (a day of birth, a meeting): not a bare year or weekday."""
    return bool(re.search(r"\d", value)) and not re.fullmatch(r"\d{4}", value.strip())


def _clean(text: str) -> str:
    """The generator writes newlines as "\\n" and empty cells of its table as "nan"."""
    return re.sub(r"(?<=[ \t,])nan\b", "", text.replace("\\n", "\n"))


def sentences(seed: int, n: int) -> list[Sample]:
    """``n`` rendered templates (those with at least one slot), deterministic in ``seed``."""
    import contextlib
    import io
    import random
    import warnings

    import numpy as np
    from presidio_evaluator.data_generator import PresidioSentenceFaker

    random.seed(seed)  # the generator also draws from these (middle initials, casing)
    np.random.seed(seed)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        faker = PresidioSentenceFaker("en_US", lower_case_ratio=0.05, random_seed=seed)
        faker.seed(seed)  # again: building the faker drew random numbers
        raw = faker.generate_new_fake_sentences(num_samples=n * 2)
    out: list[Sample] = []
    for item in raw:
        sample = Sample(_clean(item.full_text))
        for span in item.spans:
            value = _clean(span.entity_value).strip()
            if not value or value.lower() == "nan":  # an empty cell of the people table
                continue
            kind = SENSITIVE.get(span.entity_type)
            if kind == "date" and not _is_date(value):
                continue
            if kind is not None:
                sample.values.append((kind, value))
            elif span.entity_type in NOT_SENSITIVE:
                sample.plain.append(value)
        if sample.values or sample.plain:
            out.append(sample)
        if len(out) == n:
            break
    return out


@lru_cache(maxsize=65536)
def _common(word: str) -> bool:
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word.lower(), "en")) >= 4.5


def distinctive(value: str) -> list[str]:
    """The words of ``value`` that identify it (not common words like "Street" or "Apt")."""
    words = re.findall(r"[^\W_]+", value)
    return [w for w in words if (len(w) > 1 or w.isdigit()) and not _common(w)]


def present(word: str, text: str) -> bool:
    return re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text, re.IGNORECASE) is not None


def identifying(kind: str, value: str) -> list[str]:
    """The words of a sensitive ``value`` that must not leave. For an address that is
    its street line and every number in it: the dataset's address spans run on over
    the town and country, which are the non-sensitive slots everywhere else."""
    if kind == "address":
        lines = [line for line in value.splitlines() if line.strip()]
        numbers = re.findall(r"\d+", value)
        return [*distinctive(lines[0] if lines else value), *numbers]
    return distinctive(value)


def leaked(kind: str, value: str, sent: str) -> bool:
    """Whether any identifying word of ``value`` is in ``sent``."""
    return any(present(w, sent) for w in identifying(kind, value))


def touched(value: str, sent: str) -> bool:
    """Whether a non-sensitive ``value`` lost any of its words to redaction."""
    return any(not present(w, sent) for w in distinctive(value) or re.findall(r"\w+", value))
