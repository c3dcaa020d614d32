"""Pick the few tools relevant to a request before prompting a small model with them.

A small model chooses better among five tools than among fifty, and a shorter
prompt is faster. Scoring is BM25 over each tool's name, description and
argument names: no model, no download, and good enough to shortlist.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from langchain_core.tools import BaseTool

_WORD = re.compile(r"[A-Za-z][a-z]*|[a-z]+|\d+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "for",
        "from",
        "get",
        "give",
        "how",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "please",
        "the",
        "this",
        "to",
        "what",
        "when",
        "where",
        "which",
        "with",
        "you",
        "your",
    ]
)


def words(text: str) -> list[str]:
    """Lower-case words of ``text``; snake_case and camelCase are split, light stemming."""
    out = []
    for w in _WORD.findall(text.replace("_", " ")):
        w = w.lower()
        if w in _STOP:
            continue
        out.append(w[:-1] if len(w) > 3 and w.endswith("s") else w)
    return out


def tool_text(tool: BaseTool) -> str:
    args = " ".join(tool.args)
    return f"{tool.name} {tool.name} {tool.description} {args}"


def select_tools(query: str, tools: Sequence[BaseTool], k: int) -> list[BaseTool]:
    """The ``k`` tools scoring highest for ``query``, in their original order."""
    if len(tools) <= k:
        return list(tools)
    docs = [Counter(words(tool_text(t))) for t in tools]
    avg = sum(sum(d.values()) for d in docs) / len(docs) or 1.0
    terms = set(words(query))
    df = {w: sum(1 for d in docs if w in d) for w in terms}
    n = len(docs)

    def bm25(doc: Counter[str], k1: float = 1.2, b: float = 0.75) -> float:
        length = sum(doc.values())
        score = 0.0
        for w in terms:
            if doc[w]:
                idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                score += idf * doc[w] * (k1 + 1) / (doc[w] + k1 * (1 - b + b * length / avg))
        return score

    ranked = sorted(range(n), key=lambda i: -bm25(docs[i]))[:k]
    return [tools[i] for i in sorted(ranked)]
