"""The engine under every in-process model: tokens, KV cache and decoding.

An ``Engine`` (llama.cpp, transformers, or a speculative engine made of a
target, a drafter and a verifier) owns the tokenizer, the KV cache and token
generation. ``LocalChatModel`` owns what turns tokens into a chat model:
templates, stop strings, tools, usage and trace. Engines are not thread-safe:
callers hold ``engine.lock`` around ``logits`` and ``generate``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

# For models whose weights carry no chat template.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class EngineState:
    """What every engine keeps: its name, its lock, and the bytes of the tokens seen."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self._pieces: dict[int, bytes] = {}

    def trace_extra(self) -> dict[str, Any]:
        return {}


class ChatTemplate(NamedTuple):
    """A Jinja chat template and the texts of the tokens it refers to."""

    template: str
    bos: str
    eos: str


@dataclass
class Sampling:
    """Decoding settings of one call. temperature 0 means greedy."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    max_tokens: int = 512
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Grammar:
    """What a constrained decode writes: JSON that matches ``schema``. The prompt's last
    ``written`` tokens already belong to it (a reply resumed part way)."""

    schema: dict[str, Any]
    written: int = 0


Tokens = Iterator[int]


@runtime_checkable
class Engine(Protocol):
    """Tokens, KV cache and decoding of one loaded model."""

    @property
    def name(self) -> str:
        """The model's name, as traces report it."""
        ...

    @property
    def lock(self) -> threading.Lock:
        """Held around ``logits`` and ``generate``: the model is not thread-safe."""
        ...

    @property
    def n_ctx(self) -> int: ...

    @property
    def chat_template(self) -> ChatTemplate: ...

    def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        """Text of ``tokens``; with ``special``, control tokens are written out too."""
        ...

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a rendered prompt (special tokens parsed, BOS as the model wants)."""
        ...

    def piece(self, token: int) -> bytes:
        """The bytes ``token`` stands for (possibly part of a UTF-8 character)."""
        ...

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends the model's turn."""
        ...

    def logits(self, tokens: Sequence[int], first: int) -> npt.NDArray[np.float32]:
        """Next-token logits after each of ``tokens[first:]``, reusing cached prefixes.

        Shape (len(tokens) - first, vocab); ``first == len(tokens)`` only fills
        the cache. The caller holds ``lock``.
        """
        ...

    def generate(self, prompt: list[int], sampling: Sampling, grammar: Grammar | None) -> Tokens:
        """Sampled tokens after ``prompt``, under ``grammar`` when given; caller holds ``lock``."""
        ...

    def trace_extra(self) -> dict[str, Any]:
        """What this engine adds to the trace of its last call (speculative statistics, ...)."""
        ...


def log_softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    out: npt.NDArray[np.float32] = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return out


TOP_N = 20  # top log-probabilities per position, as servers report them


def top_logprobs(
    logits: npt.NDArray[np.float32], n: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp]]:
    """Log-probabilities of each row of ``logits``, and the ids of its ``n`` likeliest
    tokens, best first (a partial sort: a row is the whole vocabulary)."""
    logp = log_softmax(np.atleast_2d(logits))
    n = min(n, logp.shape[-1])
    ids = np.argpartition(-logp, n - 1, axis=-1)[:, :n]
    order = np.argsort(-np.take_along_axis(logp, ids, axis=-1), axis=-1)
    return logp, np.take_along_axis(ids, order, axis=-1)


def pick_token(
    logits: npt.NDArray[np.float32], sampling: Sampling, rng: np.random.Generator
) -> int:
    """One token from ``logits`` under temperature, top-k and top-p (greedy at temperature 0).

    Tokens at -inf (masked by a grammar) are never picked.
    """
    if sampling.temperature <= 0:
        return int(np.argmax(logits))
    scores = logits.astype(np.float64) / sampling.temperature
    finite = np.flatnonzero(np.isfinite(scores))
    k = sampling.top_k
    if 0 < k < finite.size:
        finite = finite[np.argpartition(-scores[finite], k - 1)[:k]]
    order = finite[np.argsort(-scores[finite])]
    probs = np.exp(scores[order] - scores[order[0]])
    probs /= probs.sum()
    if sampling.top_p < 1.0:
        keep = np.cumsum(probs) - probs < sampling.top_p  # mass of strictly likelier tokens
        order, probs = order[keep], probs[keep] / probs[keep].sum()
    return int(rng.choice(order, p=probs))


def continuation_logprobs(
    engine: Engine, prompt: Sequence[int], continuation: Sequence[int]
) -> npt.NDArray[np.float64]:
    """log p(continuation[i] | prompt + continuation[:i]); the caller holds ``engine.lock``."""
    full = [*prompt, *continuation]
    logp = log_softmax(engine.logits(full[:-1], len(prompt) - 1))
    return logp[np.arange(len(continuation)), list(continuation)].astype(np.float64)


def eos_token(engine: Engine) -> int:
    """The id of the token that ends the model's turn."""
    (token,) = engine.tokenize(engine.chat_template.eos, special=True)
    return token


def shared_prefix(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """How many leading tokens two sequences share (what a KV cache can keep)."""
    n = min(len(cached), len(tokens))
    differ = np.flatnonzero(np.asarray(cached[:n]) != np.asarray(tokens[:n]))
    return int(differ[0]) if differ.size else n
