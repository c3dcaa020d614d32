"""Confidence signals: how sure the SLM is, before and after it answers.

A signal maps (question, answer) to a confidence in [0, 1]; higher means keep
the SLM's answer. Task checks are plain callables run on the answer (run the
code against the examples in the prompt, validate JSON against a schema).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, ValidationError

from collab.messages import question_text, text_content
from collab.models.base import ChatTokenModel


class Signal(Protocol):
    @property
    def name(self) -> str: ...

    def confidence(self, messages: Sequence[BaseMessage], answer: AIMessage) -> float:
        """In [0, 1]: how much to trust ``answer`` to ``messages``."""
        ...


def yes_probability(model: ChatTokenModel, prompt: str) -> float:
    """P(yes) / (P(yes) + P(no)) for the model's first answer token to a yes/no question."""
    rendered = model.render([HumanMessage(prompt)])
    top = model.next_token_logprobs(model.tokenize(rendered), 40)
    yes = no = 0.0
    for token, logp in top:
        word = model.detokenize([token]).strip().lower()
        if word in {"yes", "y"}:
            yes += math.exp(logp)
        elif word in {"no", "n"}:
            no += math.exp(logp)
    return yes / (yes + no) if yes + no > 0 else 0.5


@dataclass
class TokenLogprob:
    """The SLM's own probability of its answer, per token: geometric mean or minimum.

    With ``reader`` (an LLM that shares the SLM's tokenizer and returns prompt
    log-probabilities), the LLM's probability of the SLM's answer instead: one
    read, nothing written, and no examples needed in the prompt.
    """

    model: ChatTokenModel
    reduce: Literal["mean", "min"] = "mean"
    reader: ChatTokenModel | None = None

    @property
    def name(self) -> str:
        return f"{'llm_' if self.reader is not None else ''}logprob_{self.reduce}"

    def logprobs(self, messages: Sequence[BaseMessage], answer: AIMessage) -> list[float]:
        """The reader's log-probability of each token of ``answer``, after ``messages``."""
        prompt = self.model.tokenize(self.model.render(list(messages)))
        tokens = self.model.tokenize(text_content(answer.content), special=False)
        return (self.reader or self.model).continuation_logprobs(prompt, tokens)

    def reduced(self, logps: Sequence[float]) -> float:
        if not logps:
            return 0.0
        return math.exp(sum(logps) / len(logps) if self.reduce == "mean" else min(logps))

    def confidence(self, messages: Sequence[BaseMessage], answer: AIMessage) -> float:
        scored = answer.response_metadata.get("tool_call_logprob")
        if answer.tool_calls and isinstance(scored, dict) and self.reader is None:
            # the call, scored as decoded
            return math.exp(float(scored[self.reduce]))
        return self.reduced(self.logprobs(messages, answer))


SELF_CHECK = (
    "Here is a request and a proposed answer.\n\nRequest:\n{question}\n\nProposed answer:\n"
    "{answer}\n\nIs the proposed answer correct and complete? Reply with Yes or No only."
)


@dataclass
class SelfVerification:
    """The SLM judges its own answer against the question: P(yes)."""

    model: ChatTokenModel
    name: str = "self_verification"

    def confidence(self, messages: Sequence[BaseMessage], answer: AIMessage) -> float:
        prompt = SELF_CHECK.format(
            question=question_text(messages), answer=text_content(answer.content)
        )
        return yes_probability(self.model, prompt)


Check = Callable[[str, str], bool | float | None]  # (question, answer) -> pass, score or n/a


@dataclass
class TaskCheck:
    """A plain callable on (question, answer text): True/1.0 passes; None means no opinion."""

    check: Check
    name: str = "task_check"
    no_opinion: float = 0.5

    def confidence(self, messages: Sequence[BaseMessage], answer: AIMessage) -> float:
        result = self.check(question_text(messages), text_content(answer.content))
        if result is None:
            return self.no_opinion
        return float(result)


# ---- task checks ------------------------------------------------------------------

_FENCE = re.compile(r"```(?:[\w+-]*)\n(.*?)```", re.DOTALL)


def code_in(text: str) -> str:
    """The code of an answer: its fenced blocks joined, or the whole text when unfenced."""
    blocks = _FENCE.findall(text)
    return "\n".join(blocks) if blocks else text


_EXAMPLE = re.compile(r"^\s*>>> (.+)\n\s*(\S.*)$", re.MULTILINE)


def doctest_examples(question: str) -> list[tuple[str, str]]:
    """(expression, expected) pairs written as ``>>> expr`` then the result, as in docstrings."""
    return [(m.group(1).strip(), m.group(2).strip()) for m in _EXAMPLE.finditer(question)]


def code_passes_examples(question: str, answer: str, *, timeout_s: float = 5.0) -> float | None:
    """Share of the prompt's ``>>>`` examples the answer's code passes; None without examples.

    The code runs in a separate Python process with a timeout, never in this one.
    """
    examples = doctest_examples(question)
    if not examples:
        return None
    code = code_in(answer)
    if "def " not in code:  # an answer that is only a function body: put its header back
        code = code_in(question) + "\n" + code
    checks = "\n".join(
        f"try:\n    ok += ({expr}) == ({expected})\nexcept Exception:\n    pass"
        for expr, expected in examples
    )
    program = f"{code}\n\nok = 0\n{checks}\nprint('collab-passed', ok)\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check.py"
        path.write_text(program)
        try:
            run = subprocess.run(
                [sys.executable, str(path)], capture_output=True, text=True,
                timeout=timeout_s, cwd=tmp,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return 0.0
    found = re.search(r"collab-passed (\d+)", run.stdout)
    return int(found.group(1)) / len(examples) if found else 0.0


def json_matches(schema: type[BaseModel]) -> Check:
    """A check that the answer is JSON (fenced or not) valid against ``schema``."""

    def check(question: str, answer: str) -> bool:
        try:
            schema.model_validate_json(code_in(answer).strip())
        except (ValidationError, json.JSONDecodeError, ValueError):
            return False
        return True

    return check
