"""Hugging Face transformers models in-process, as a LangChain chat model.

Loads a local folder, a hub id (when online) or a GGUF file (dequantized by
transformers). Tool calls and structured output are decoded under a grammar
(xgrammar). Needs the ``transformers`` extra.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, PrivateAttr

from collab.errors import ConfigurationError, ContextLengthError, ModelLoadError, ModelNotFoundError
from collab.models import catalog
from collab.models.local import CHATML_TEMPLATE, LocalChatModel, Sampling

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


@dataclass
class LoadedTransformer:
    model: Any
    tokenizer: Any
    source: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    cache: Any = None  # KV cache of ``cached`` tokens, reused across calls
    cached: list[int] = field(default_factory=list)
    eog: set[int] = field(default_factory=set)
    pieces: dict[int, bytes] = field(default_factory=dict)
    grammar_compiler: Any = None


_LOADED: dict[tuple[str, str | None, str], LoadedTransformer] = {}
_LOADING = threading.Lock()


def _source(model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or hub id, gguf filename or None) for transformers' from_pretrained."""
    if gguf_file:
        return model, gguf_file
    if model in catalog.CATALOG or model.lower().endswith(".gguf") or model.startswith("hf:"):
        path = catalog.resolve(model)
        return str(path.parent), path.name
    return model, None


def load_transformer(model: str, gguf_file: str | None, dtype: str) -> LoadedTransformer:
    torch, transformers = _require()
    key = (model, gguf_file, dtype)
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
            loaded = LoadedTransformer(model=net, tokenizer=tokenizer, source=model)
            vocab = tokenizer.get_vocab()
            loaded.eog = {vocab[t] for t in _EOG_TEXTS if t in vocab}
            if tokenizer.eos_token_id is not None:
                loaded.eog.add(int(tokenizer.eos_token_id))
            _LOADED[key] = loaded
        return _LOADED[key]


class TransformersChatModel(LocalChatModel):
    """A causal LM run in-process by Hugging Face transformers (CPU by default)."""

    model: str = Field("smollm2-135m", description="catalog name, GGUF path, folder or hub id")
    gguf_file: str | None = Field(None, description="GGUF file name inside the `model` folder")
    dtype: str = Field("float32", description="torch dtype to load the weights in")
    n_ctx: int = Field(4096, ge=64)

    _loaded: LoadedTransformer | None = PrivateAttr(None)

    @property
    def _llm_type(self) -> str:
        return "transformers"

    @property
    def loaded(self) -> LoadedTransformer:
        if self._loaded is None:
            self._loaded = load_transformer(self.model, self.gguf_file, self.dtype)
        return self._loaded

    # ---- engine hooks -------------------------------------------------------------

    def _lock(self) -> threading.Lock:
        return self.loaded.lock

    def _n_ctx(self) -> int:
        return self.n_ctx

    def _chat_template(self) -> tuple[str, str, str]:
        tok = self.loaded.tokenizer
        return tok.chat_template or CHATML_TEMPLATE, tok.bos_token or "", tok.eos_token or ""

    def _encode(self, text: str) -> list[int]:
        tok = self.loaded.tokenizer
        bos = tok.bos_token or ""
        add = not (bos and text.startswith(bos))
        return list(tok(text, add_special_tokens=add)["input_ids"])

    def _piece(self, token: int) -> bytes:
        pieces = self.loaded.pieces
        if token not in pieces:
            tok = self.loaded.tokenizer
            text = tok.convert_ids_to_tokens(token)
            if text is not None and all(c in _BYTE_DECODER for c in text):
                pieces[token] = bytes(_BYTE_DECODER[c] for c in text)
            else:
                pieces[token] = tok.decode([token]).encode("utf-8")
        return pieces[token]

    def _is_eog(self, token: int) -> bool:
        return token in self.loaded.eog

    def _generate_tokens(
        self, prompt: list[int], sampling: Sampling, schema: dict[str, Any] | None
    ) -> Generator[int, None, None]:
        torch, _ = _require()
        generator = torch.Generator()
        if sampling.seed is not None:
            generator.manual_seed(sampling.seed)
        else:
            generator.seed()
        matcher, bitmask = self._matcher(schema) if schema is not None else (None, None)
        tokens = list(prompt)
        while True:
            logits = torch.from_numpy(self.logits_unlocked(tokens, len(tokens) - 1)[0])
            if matcher is not None and bitmask is not None:
                import xgrammar as xgr

                matcher.fill_next_token_bitmask(bitmask)
                row = logits.unsqueeze(0)
                xgr.apply_token_bitmask_inplace(row, bitmask)
                logits = row[0]
            token = sample(logits, sampling, generator)
            if matcher is not None:
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
        loaded = self.loaded
        if loaded.grammar_compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(
                loaded.tokenizer, vocab_size=loaded.model.config.vocab_size
            )
            loaded.grammar_compiler = xgr.GrammarCompiler(info)
        compiled = loaded.grammar_compiler.compile_json_schema(json.dumps(schema))
        matcher = xgr.GrammarMatcher(compiled)
        bitmask = xgr.allocate_token_bitmask(1, loaded.model.config.vocab_size)
        return matcher, bitmask

    # ---- token-level protocol -----------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        tok = self.loaded.tokenizer
        return list(
            tok(text, add_special_tokens=False, split_special_tokens=not special)["input_ids"]
        )

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return str(self.loaded.tokenizer.decode(list(tokens), skip_special_tokens=not special))

    def logits_unlocked(self, tokens: Sequence[int], first: int) -> npt.NDArray[np.float32]:
        torch, transformers = _require()
        loaded = self.loaded
        toks = list(tokens)
        n = len(toks)
        if not 0 <= first <= n:  # first == n: only fill the cache
            raise ValueError(f"first={first} must index into the {n} tokens")
        if n > self.n_ctx:
            raise ContextLengthError(
                f"{n} tokens do not fit the context of {self.n_ctx}",
                hint="shorten the input, or raise n_ctx",
            )
        prefix = 0
        for a, b in zip(loaded.cached, toks, strict=False):
            if a != b:
                break
            prefix += 1
        keep = min(prefix, first)
        if loaded.cache is None or keep == 0:
            loaded.cache = transformers.DynamicCache()
            keep = 0
        elif keep < len(loaded.cached):
            loaded.cache.crop(keep - len(loaded.cached))  # negative: tokens to drop
        vocab = int(loaded.model.config.vocab_size)
        if keep == n:  # all cached, no rows asked for
            loaded.cached = toks
            return np.empty((0, vocab), dtype=np.float32)
        with torch.inference_mode():
            out = loaded.model(
                input_ids=torch.tensor([toks[keep:]]),
                past_key_values=loaded.cache,
                use_cache=True,
            )
        loaded.cached = toks
        rows = out.logits[0, first - keep :].float().numpy()
        return np.ascontiguousarray(rows, dtype=np.float32)


def sample(logits: Any, sampling: Sampling, generator: Any) -> int:
    """One token from ``logits`` under temperature, top-k and top-p (greedy at temperature 0)."""
    import torch

    if sampling.temperature <= 0:
        return int(torch.argmax(logits))
    scores = logits / sampling.temperature
    if 0 < sampling.top_k < scores.numel():
        kth = torch.topk(scores, sampling.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, index = torch.sort(scores, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        drop = cumulative - torch.softmax(ordered, dim=-1) > sampling.top_p
        scores = scores.scatter(0, index[drop], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))
