"""GGUF models in-process through llama-cpp-python: ``LlamaCppEngine`` and its chat model.

One engine per (file, context size, threads, batch) is shared by every model
that asks for it, behind one lock: llama.cpp contexts are not thread-safe.
The KV cache is reused across calls whose prompts share a prefix.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from collab.errors import ConfigurationError, ContextLengthError, ModelLoadError
from collab.models import catalog
from collab.models.engine import (
    CHATML_TEMPLATE,
    ChatTemplate,
    EngineState,
    Grammar,
    Sampling,
    Tokens,
    shared_prefix,
)
from collab.models.grammar import GrammarGate, constrained_tokens
from collab.models.local import LocalChatModel

_LOOSE_CHAR = r'char ::= [^"\\]'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F]'


class LlamaCppEngine(EngineState):
    """A loaded llama.cpp model and context; see ``collab.models.engine.Engine``."""

    def __init__(self, llama: Any, path: Path, name: str, n_batch: int) -> None:
        super().__init__(name)
        self.llama, self.path, self.n_batch = llama, path, n_batch
        self._grammars: dict[str, str] = {}
        self._template: ChatTemplate | None = None

    @property
    def n_ctx(self) -> int:
        return int(self.llama.n_ctx())

    @property
    def chat_template(self) -> ChatTemplate:
        if self._template is None:
            llama = self.llama
            self._template = ChatTemplate(
                llama.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE,
                self._special_text(llama.token_bos()),
                self._special_text(llama.token_eos()),
            )
        return self._template

    def _special_text(self, token: int) -> str:
        return "" if token < 0 else self.detokenize([token], special=True)

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return bytes(self.llama.detokenize(list(tokens), special=special)).decode(
            "utf-8", "replace"
        )

    def encode_prompt(self, text: str) -> list[int]:
        bos = self.chat_template.bos
        add_bos = not (bos and text.startswith(bos))
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def piece(self, token: int) -> bytes:
        if token not in self._pieces:
            import llama_cpp

            vocab = self.llama._model.vocab
            size = 64
            while True:
                buf = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, False)
                if n >= 0:
                    break
                size = -n
            self._pieces[token] = buf.raw[:n]
        return self._pieces[token]

    def is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.llama._model.vocab, token))

    def generate(self, prompt: list[int], sampling: Sampling, grammar: Grammar | None) -> Tokens:
        # llama.cpp's numbers depend slightly on batch shape. Evaluating the last
        # prompt token on its own, whether or not the rest came from the cache,
        # keeps greedy output identical across calls.
        if len(prompt) > 1:
            self.logits(prompt[:-1], len(prompt) - 1)
        if grammar is not None:
            vocab = self.llama._model.vocab
            gate = GrammarGate(vocab, self._gbnf(grammar.schema), int(self.llama.n_vocab()))
            gate.written(prompt[len(prompt) - grammar.written :] if grammar.written else [])
            return constrained_tokens(self._next_logits, gate, prompt, sampling)
        llama = self.llama
        llama.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(32))
        tokens: Tokens = llama.generate(
            prompt,
            temp=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=0.0,
            repeat_penalty=1.0,
        )
        return tokens

    def _next_logits(self, tokens: list[int]) -> npt.NDArray[np.float32]:
        row: npt.NDArray[np.float32] = self.logits(tokens, len(tokens) - 1)[0]
        return row

    def _gbnf(self, schema: dict[str, Any]) -> str:
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        key = json.dumps(schema)  # key order kept: properties are emitted in schema order
        if key not in self._grammars:
            # The converter lets strings hold raw control characters, which JSON
            # forbids; allow only escaped ones.
            try:
                gbnf = json_schema_to_gbnf(key)
            except Exception as exc:  # the converter asserts on what it does not support
                why = str(exc) or type(exc).__name__
                raise ConfigurationError(
                    f"this JSON schema cannot be turned into a grammar: {why}",
                    hint="use the JSON schema types and keywords llama.cpp supports "
                    f"(the schema: {key[:200]})",
                ) from exc
            self._grammars[key] = gbnf.replace(_LOOSE_CHAR, _JSON_CHAR)
        return self._grammars[key]

    def logits(self, tokens: Sequence[int], first: int) -> npt.NDArray[np.float32]:
        """See ``Engine.logits``: the KV cache keeps the longest prefix already evaluated
        and rolls back the rest, so a caller that extends or trims a sequence never
        pays for the shared prefix twice."""
        llama = self.llama
        toks = list(tokens)
        n = len(toks)
        if not 0 <= first <= n:
            raise ValueError(f"first={first} must index into the {n} tokens")
        if n > self.n_ctx:
            raise ContextLengthError(
                f"{n} tokens do not fit the context of {self.n_ctx}",
                hint="shorten the input, or load the model with a larger n_ctx",
            )
        keep = min(shared_prefix(llama.input_ids[: llama.n_tokens], toks), first)
        llama._ctx.kv_cache_seq_rm(-1, keep, -1)
        llama.n_tokens = keep
        n_vocab = int(llama.n_vocab())
        rows = np.empty((n - first, n_vocab), dtype=np.float32)
        try:
            for pos in range(keep, n, self.n_batch):
                chunk = toks[pos : pos + self.n_batch]
                self._decode_batch(chunk, pos, first, rows, n_vocab)
                llama.input_ids[pos : pos + len(chunk)] = chunk
                llama.n_tokens = pos + len(chunk)
        finally:
            # The sampler's view of "current logits" no longer holds; the next
            # generate() re-evaluates its last prompt token.
            llama._requires_eval = True
        return rows

    def _decode_batch(
        self, chunk: list[int], pos: int, first: int, rows: npt.NDArray[np.float32], n_vocab: int
    ) -> None:
        llama = self.llama
        batch = llama._batch
        raw = batch.batch
        for i, token in enumerate(chunk):
            raw.token[i] = token
            raw.pos[i] = pos + i
            raw.seq_id[i][0] = 0
            raw.n_seq_id[i] = 1
            raw.logits[i] = pos + i >= first
        raw.n_tokens = len(chunk)
        llama._ctx.decode(batch)
        for i in range(len(chunk)):
            if pos + i >= first:
                ptr = llama._ctx.get_logits_ith(i)
                rows[pos + i - first] = np.ctypeslib.as_array(ptr, shape=(n_vocab,))


_LOADED: dict[tuple[str, int, int, int], LlamaCppEngine] = {}
_LOADING = threading.Lock()


@atexit.register
def _close_all() -> None:
    # Freed here, while llama_cpp's module is still whole: freed later, at
    # interpreter teardown, llama.cpp's destructors fail with a traceback.
    for engine in _LOADED.values():
        if engine.lock.acquire(timeout=1.0):  # never free a model that is in use
            engine.llama.close()
    _LOADED.clear()


def default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def load_llama(
    path: Path, *, name: str, n_ctx: int, n_threads: int, n_batch: int
) -> LlamaCppEngine:
    """The shared engine for these settings; loads the model on first use."""
    key = (str(path.resolve()), n_ctx, n_threads, n_batch)
    with _LOADING:
        if key not in _LOADED:
            from llama_cpp import Llama

            catalog.check_gguf(path)
            try:
                llama = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    n_batch=n_batch,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelLoadError(
                    f"llama.cpp could not load {path}: {exc}",
                    hint="the file may be truncated or corrupt; fetch it again "
                    "(`collab models pull NAME`) or pass another GGUF file",
                ) from exc
            _LOADED[key] = LlamaCppEngine(llama, path, name, n_batch)
        return _LOADED[key]


class LlamaCppChatModel(LocalChatModel):
    """A GGUF model run in-process by llama.cpp.

    ``model`` is a catalog name (``collab models list``), a ``.gguf`` path, or
    ``hf:OWNER/REPO/FILE.gguf`` when online. The model loads on first use.
    """

    model: str = Field("smollm2-135m", description="catalog name or GGUF path")
    n_ctx: int = Field(4096, ge=64)
    n_threads: int = Field(default_factory=default_threads, ge=1)
    n_batch: int = Field(512, ge=1)

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    def _load_engine(self) -> LlamaCppEngine:
        return load_llama(
            catalog.resolve(self.model),
            name=self.model,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_batch=self.n_batch,
        )

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama``; hold ``engine.lock`` while using it."""
        engine = self.engine
        if not isinstance(engine, LlamaCppEngine):
            raise ConfigurationError(f"{self.model} runs on {type(engine).__name__}, not llama.cpp")
        return engine.llama
