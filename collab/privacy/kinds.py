"""The kinds of sensitive data collab protects, and the Presidio entities behind each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from collab.errors import ConfigurationError

Kind = Literal[
    "name", "email", "phone", "card", "iban", "bank_account", "national_id",
    "ip", "url", "date", "address", "secret",
]  # fmt: skip
KINDS: tuple[Kind, ...] = get_args(Kind)

# Presidio's entity names for each kind; collab's own recognizers report the kind's
# name in capitals (NAME, ADDRESS, SECRET, ...).
ENTITIES: dict[Kind, tuple[str, ...]] = {
    "name": ("NAME",),
    "email": ("EMAIL_ADDRESS",),
    "phone": ("PHONE_NUMBER", "PHONE"),
    "card": ("CREDIT_CARD",),
    "iban": ("IBAN_CODE",),
    "bank_account": ("US_BANK_NUMBER", "CRYPTO"),
    "national_id": (
        "US_SSN",
        "US_ITIN",
        "US_PASSPORT",
        "US_DRIVER_LICENSE",
        "UK_NHS",
        "MEDICAL_LICENSE",
        "NATIONAL_ID",
    ),
    "ip": ("IP_ADDRESS", "MAC_ADDRESS"),
    "url": ("URL",),
    "date": ("DATE_TIME", "DATE"),
    "address": ("ADDRESS",),
    "secret": ("SECRET",),
}
KIND_OF: dict[str, Kind] = {entity: kind for kind, names in ENTITIES.items() for entity in names}


def check_kinds(kinds: Iterable[str]) -> tuple[Kind, ...]:
    """``kinds`` as known kinds; an unknown one is refused, naming the kinds that exist."""
    out: list[Kind] = []
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigurationError(
                f"unknown sensitive-data kind {kind!r}",
                hint=f"the kinds are: {', '.join(KINDS)}",
            )
        out.append(kind)
    return tuple(out)
