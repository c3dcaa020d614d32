"""Hugging Face transformers models in-process: ``TransformersEngine`` and its chat model.

Loads a local folder, a hub id (when online) or a GGUF file (dequantized by
transformers). Tool calls and structured output are decoded under a grammar
(xgrammar). Needs the ``transformers`` extra.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from collab.errors import (
    ConfigurationError,
    ContextLengthError,
    ModelLoadError,
    ModelNotFoundError,
    ModelOutputError,
)
from collab.models import catalog
from collab.models.engine import (
    CHATML_TEMPLATE,
    ChatTemplate,
    EngineState,
    Grammar,
    Sampling,
    Tokens,
    pick_token,
    shared_prefix,
)
from collab.models.local import LocalChatModel

_EOG_TEXTS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "</s>")


def _require() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ConfigurationError(
            "the transformers backend needs torch and transformers",
            hint="pip install 'collab-agents[transformers]'",
        ) from exc
    return torch, transformers


def _byte_decoder() -> dict[str, int]:
    """GPT-2's map from byte-level BPE characters back to bytes."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    cs = list(bs)
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


_BYTE_DECODER = _byte_decoder()


class TransformersEngine(EngineState):
    """A transformers model and tokenizer; see ``collab.models.engine.Engine``."""

    def __init__(self, model: Any, tokenizer: Any, name: str, n_ctx: int) -> None:
        super().__init__(name)
        self.model, self.tokenizer, self.n_ctx = model, tokenizer, n_ctx
        self.cache: Any = None  # KV cache of ``cached`` tokens, reused across calls
        self.cached: list[int] = []
        self._grammar_compiler: Any = None
        vocab = tokenizer.get_vocab()
        self.eog = {vocab[t] for t in _EOG_TEXTS if t in vocab}
        if tokenizer.eos_token_id is not None:
            self.eog.add(int(tokenizer.eos_token_id))

    @property
    def chat_template(self) -> ChatTemplate:
        tok = self.tokenizer
        return ChatTemplate(
            tok.chat_template or CHATML_TEMPLATE, tok.bos_token or "", tok.eos_token or ""
        )

    def encode_prompt(self, text: str) -> list[int]:
        tok = self.tokenizer
        bos = tok.bos_token or ""
        add = not (bos and text.startswith(bos))
        return list(tok(text, add_special_tokens=add)["input_ids"])

    def piece(self, token: int) -> bytes:
        if token not in self._pieces:
            tok = self.tokenizer
            text = tok.convert_ids_to_tokens(token)
            if text is not None and all(c in _BYTE_DECODER for c in text):
                self._pieces[token] = bytes(_BYTE_DECODER[c] for c in text)
            else:
                self._pieces[token] = tok.decode([token]).encode("utf-8")
        return self._pieces[token]

    def is_eog(self, token: int) -> bool:
        return token in self.eog

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return list(
            self.tokenizer(text, add_special_tokens=False, split_special_tokens=not special)[
                "input_ids"
            ]
        )

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return str(self.tokenizer.decode(list(tokens), skip_special_tokens=not special))

    def generate(self, prompt: list[int], sampling: Sampling, grammar: Grammar | None) -> Tokens:
        rng = np.random.default_rng(sampling.seed)
        matcher, bitmask = self._matcher(grammar.schema) if grammar else (None, None)
        for token in prompt[len(prompt) - grammar.written :] if grammar and grammar.written else []:
            if matcher is not None and not matcher.accept_token(token):
                raise ModelOutputError("a reply resumed part way does not fit its grammar")
        tokens = list(prompt)
        while True:
            logits = self.logits(tokens, len(tokens) - 1)[0]
            token = pick_token(logits, sampling, rng)
            # The grammar is asked about the token drawn; the vocabulary is masked
            # only when it refuses (see collab.models.grammar).
            if matcher is not None and bitmask is not None and not matcher.accept_token(token):
                import torch
                import xgrammar as xgr

                matcher.fill_next_token_bitmask(bitmask)
                row = torch.from_numpy(logits).unsqueeze(0)
                xgr.apply_token_bitmask_inplace(row, bitmask)
                token = pick_token(row[0].numpy(), sampling, rng)
                matcher.accept_token(token)
            yield token
            tokens.append(token)

    def _matcher(self, schema: dict[str, Any]) -> tuple[Any, Any]:
        try:
            import xgrammar as xgr
        except ImportError as exc:
            raise ConfigurationError(
                "constrained decoding with transformers needs xgrammar",
                hint="pip install 'collab-agents[transformers]'",
            ) from exc
        vocab_size = self.model.config.vocab_size
        if self._grammar_compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab_size)
            self._grammar_compiler = xgr.GrammarCompiler(info)
        compiled = self._grammar_compiler.compile_json_schema(json.dumps(schema))
        return xgr.GrammarMatcher(compiled), xgr.allocate_token_bitmask(1, vocab_size)

    def logits(self, tokens: Sequence[int], first: int) -> npt.NDArray[np.float32]:
        torch, transformers = _require()
        toks = list(tokens)
        n = len(toks)
        if not 0 <= first <= n:  # first == n: only fill the cache
            raise ValueError(f"first={first} must index into the {n} tokens")
        if n > self.n_ctx:
            raise ContextLengthError(
                f"{n} tokens do not fit the context of {self.n_ctx}",
                hint="shorten the input, or raise n_ctx",
            )
        keep = min(shared_prefix(self.cached, toks), first)
        if self.cache is None or keep == 0:
            self.cache = transformers.DynamicCache()
            keep = 0
        elif keep < len(self.cached):
            self.cache.crop(keep - len(self.cached))  # negative: tokens to drop
        vocab = int(self.model.config.vocab_size)
        if keep == n:  # all cached, no rows asked for
            self.cached = toks
            return np.empty((0, vocab), dtype=np.float32)
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([toks[keep:]]), past_key_values=self.cache, use_cache=True
            )
        self.cached = toks
        rows = out.logits[0, first - keep :].float().numpy()
        return np.ascontiguousarray(rows, dtype=np.float32)


_LOADED: dict[tuple[str, str | None, str, int], TransformersEngine] = {}
_LOADING = threading.Lock()


def _source(model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or hub id, gguf filename or None) for transformers' from_pretrained."""
    if gguf_file:
        return model, gguf_file
    if model in catalog.CATALOG or model.lower().endswith(".gguf") or model.startswith("hf:"):
        path = catalog.resolve(model)
        return str(path.parent), path.name
    return model, None


def load_transformer(
    model: str, gguf_file: str | None, dtype: str, n_ctx: int
) -> TransformersEngine:
    torch, transformers = _require()
    key = (model, gguf_file, dtype, n_ctx)
    with _LOADING:
        if key not in _LOADED:
            where, gguf = _source(model, gguf_file)
            if gguf is None and not Path(where).exists() and "/" not in where:
                raise ModelNotFoundError(
                    f"{model!r} is not a catalog name, GGUF file, folder or hub id",
                    hint="pass a catalog name (collab models list), a .gguf path, a model "
                    "folder, or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct",
                )
            kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(where, **kwargs)
                net = transformers.AutoModelForCausalLM.from_pretrained(
                    where, dtype=getattr(torch, dtype), **kwargs
                )
            except OSError as exc:
                raise ModelNotFoundError(
                    f"transformers could not find {model!r}: {exc}",
                    hint="offline, use a catalog name or a local folder/GGUF file",
                ) from exc
            except Exception as exc:
                raise ModelLoadError(f"transformers could not load {model!r}: {exc}") from exc
            net.eval()
            _LOADED[key] = TransformersEngine(net, tokenizer, model, n_ctx)
        return _LOADED[key]


class TransformersChatModel(LocalChatModel):
    """A causal LM run in-process by Hugging Face transformers (CPU by default)."""

    model: str = Field("smollm2-135m", description="catalog name, GGUF path, folder or hub id")
    gguf_file: str | None = Field(None, description="GGUF file name inside the `model` folder")
    dtype: str = Field("float32", description="torch dtype to load the weights in")
    n_ctx: int = Field(4096, ge=64)

    @property
    def _llm_type(self) -> str:
        return "transformers"

    def _load_engine(self) -> TransformersEngine:
        return load_transformer(self.model, self.gguf_file, self.dtype, self.n_ctx)
