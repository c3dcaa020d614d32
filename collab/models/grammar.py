"""Grammar-constrained sampling that costs close to nothing: check the token drawn, mask rarely.

llama-cpp-python applies a grammar to the whole vocabulary (151,936 tokens
for Qwen) at every step. ``GrammarGate`` instead takes the token the free
model would pick and asks the grammar about that one token; only when the
grammar refuses it is the vocabulary masked and the token picked again from
what the grammar allows (llama.cpp's own ``common_sampler`` does the same).
Greedy output is unchanged: the free argmax, when allowed, is the argmax of
the allowed tokens. ``constrained_tokens`` is the decode loop over an engine's
logits.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from collab.errors import ConfigurationError, ModelOutputError
from collab.models.engine import Sampling, pick_token

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class GrammarGate:
    """One llama.cpp grammar's state while a reply is decoded under it."""

    def __init__(self, vocab: Any, gbnf: str, n_vocab: int) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self._sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not self._sampler:
            raise ConfigurationError(
                "llama.cpp refused the grammar built from the schema",
                hint="simplify the JSON schema (no unsupported keywords or patterns)",
            )
        self._one = (llama_cpp.llama_token_data * 1)()
        self._full = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._full["id"] = np.arange(n_vocab, dtype=np.int32)

    def _apply(self, data: Any, size: int) -> None:
        lib = self._lib
        array = lib.llama_token_data_array(data=data, size=size, selected=-1, sorted=False)
        lib.llama_sampler_apply(self._sampler, ctypes.byref(array))

    def allows(self, token: int) -> bool:
        entry: Any = self._one[0]
        entry.id, entry.logit, entry.p = token, 0.0, 0.0
        self._apply(self._one, 1)
        return bool(np.isfinite(entry.logit))

    def mask(self, logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``logits`` with every token the grammar refuses at -inf."""
        full = self._full
        full["id"] = np.arange(full.size, dtype=np.int32)
        full["logit"] = logits
        pointer = full.ctypes.data_as(ctypes.POINTER(self._lib.llama_token_data))
        self._apply(pointer, full.size)
        out = np.full_like(logits, -np.inf)
        out[full["id"]] = full["logit"]
        return out

    def written(self, tokens: list[int]) -> None:
        """Advance over tokens already written under this grammar (a resumed reply)."""
        for token in tokens:
            if not self.allows(token):
                raise ModelOutputError(
                    "a reply resumed part way does not fit its grammar",
                    hint="this is a bug in collab's JSON repair; report the schema",
                )
            self.accept(token)

    def accept(self, token: int) -> None:
        self._lib.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        if self._sampler:
            self._lib.llama_sampler_free(self._sampler)
            self._sampler = None


Logits = Callable[[list[int]], npt.NDArray[np.float32]]


def constrained_tokens(
    next_logits: Logits, gate: GrammarGate, prompt: list[int], sampling: Sampling
) -> Iterator[int]:
    """Tokens after ``prompt`` that the grammar allows; ``next_logits(tokens)`` is the
    model's next-token logits after ``tokens``."""
    rng = np.random.default_rng(sampling.seed)
    tokens = list(prompt)
    try:
        while True:
            logits = next_logits(tokens)
            token = pick_token(logits, sampling, rng)
            if not gate.allows(token):
                token = pick_token(gate.mask(logits), sampling, rng)
            gate.accept(token)
            yield token
            tokens.append(token)
    finally:
        gate.close()
