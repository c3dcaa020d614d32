"""How common a word is in English (``wordfreq``), for telling names from words."""

from __future__ import annotations

from functools import lru_cache

RARE = 3.0  # zipf frequency (log10 per billion words) below which a word is rare


@lru_cache(maxsize=65536)
def zipf(word: str) -> float:
    """How often ``word`` (any case) is written in English, on wordfreq's zipf scale."""
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word.lower(), "en"))


def rare(word: str) -> bool:
    return zipf(word) < RARE
