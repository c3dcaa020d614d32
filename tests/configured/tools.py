"""Two tools named in test config files as ``tests.configured.tools:<name>``; each call is
written to the file ``$COLLAB_TEST_TOOL_LOG`` names, so a test sees that it ran."""

from __future__ import annotations

import os
from pathlib import Path

from langchain_core.tools import tool


def _log(line: str) -> None:
    path = os.environ.get("COLLAB_TEST_TOOL_LOG")
    if path:
        with Path(path).open("a") as out:
            out.write(line + "\n")


def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    _log(f"multiply {a} {b}")
    return a * b


@tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    _log(f"word_count {text!r}")
    return len(text.split())
