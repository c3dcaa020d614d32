"""Every example runs offline, as ``python examples/NAME.py``, and does what it says.

SmolLM2 stands in for the LLM here (``COLLAB_LLM``) to keep the suite fast; the
examples default to the configured models.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

EXPECT = {
    "support_agent": ["[tool_calls]", "[verdict] {'event': 'verdict', 'of': 'tool_calls'",
                      "refunds actually sent:"],
    "code_assistant": ["-> cascade;", "escalations:"],
    "private_summary": ["[EMAIL_1]", "[IBAN_1]", "personal data that reached the LLM: none"],
    "speculative": ["identical output: True", "speedup"],
    "langchain_client": ["chain:", "stream:", "answered by {'model': 'smollm2-135m'"],
    "agent_middleware": ["[tool] find_orders(email='maria.rossi@example.org')",
                         "[tool result] #4471 headphones", "answer:"],
}  # fmt: skip


def test_every_example_is_tested() -> None:
    assert {p.stem for p in (ROOT / "examples").glob("*.py")} == set(EXPECT)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_example_runs(name: str) -> None:
    env = {**os.environ, "COLLAB_LLM": "smollm2-135m", "COLLAB_N_CTX": "2048"}
    env.pop("COLLAB_LLM_BASE_URL", None)
    done = subprocess.run(
        [sys.executable, f"examples/{name}.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for words in EXPECT[name]:
        assert words in done.stdout, done.stdout[-3000:]
