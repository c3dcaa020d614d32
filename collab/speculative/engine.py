"""``SpeculativeEngine``: a target engine whose tokens come from draft-and-verify decoding.

Everything but token generation is the target's: template, tokenizer,
context. Grammar-constrained requests (tool calls, structured output) decode
with the target alone. ``SpeculativeChatModel`` is a ``LocalChatModel`` over
this engine.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field

from collab.errors import CapabilityError
from collab.models.engine import ChatTemplate, Engine, Grammar, Sampling, Tokens
from collab.models.local import LocalChatModel
from collab.models.profile import location_of
from collab.speculative.decoder import SpeculativeDecoder, draft_model
from collab.speculative.drafters import CombinedDrafter, Drafter, ModelDrafter, NgramDrafter
from collab.speculative.verifiers import PromptScorer, RemoteVerifier, Tolerance, Verifier
from collab.trace import Location


class SpeculativeEngine:
    """``target``'s tokens, drafted by ``drafter`` and judged by ``verifier`` (the target
    itself when None); see ``collab.models.engine.Engine``."""

    def __init__(
        self,
        target: Engine,
        drafter: Drafter,
        verifier: Verifier | None = None,
        *,
        gamma: int | None = None,
        max_gamma: int = 32,
        name: str = "",
    ) -> None:
        self.target, self.drafter, self.remote = target, drafter, verifier is not None
        judge = getattr(verifier, "model", None)  # a server, for a RemoteVerifier
        self.location: Location = location_of(judge) if judge is not None else "local"
        self.decoder = SpeculativeDecoder(
            verifier or target, drafter, gamma=gamma, max_gamma=max_gamma, ends=target.is_eog
        )
        self.name = name or f"{target.name}+speculative"

    @property
    def lock(self) -> threading.Lock:
        return self.target.lock

    @property
    def n_ctx(self) -> int:
        return self.target.n_ctx

    @property
    def chat_template(self) -> ChatTemplate:
        return self.target.chat_template

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self.target.tokenize(text, special=special)

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return self.target.detokenize(tokens, special=special)

    def encode_prompt(self, text: str) -> list[int]:
        return self.target.encode_prompt(text)

    def piece(self, token: int) -> bytes:
        return self.target.piece(token)

    def is_eog(self, token: int) -> bool:
        return self.target.is_eog(token)

    def logits(self, tokens: Sequence[int], first: int) -> npt.NDArray[np.float32]:
        return self.target.logits(tokens, first)

    def trace_extra(self) -> dict[str, Any]:
        return {"speculative": self.decoder.stats.summary()}

    def generate(self, prompt: list[int], sampling: Sampling, grammar: Grammar | None) -> Tokens:
        if grammar is not None:
            if self.remote:
                raise CapabilityError(
                    "tool calls and structured output do not run speculatively against a server",
                    hint="send grammar-constrained requests to the server model directly",
                )
            yield from self.target.generate(prompt, sampling, grammar)
            return
        with ExitStack() as stack:
            draft = draft_model(self.drafter)
            if draft is not None and draft.model.engine.lock is not self.target.lock:
                stack.enter_context(draft.model.engine.lock)
            yield from self.decoder.generate(prompt, sampling)


class SpeculativeChatModel(LocalChatModel):
    """A target whose tokens come from speculative decoding.

    Everything but token generation is the target's. With ``verifier`` set (see
    ``remote``), the target only renders and tokenizes, and the verifier, a
    server hosting the real target, judges the drafts.
    """

    target: LocalChatModel
    drafter: Any = Field(description="a Drafter: NgramDrafter, ModelDrafter, CombinedDrafter")
    verifier: Any = Field(None, description="a Verifier; None: the target, in-process")
    gamma: int | None = Field(None, ge=1, description="fixed draft length; None adapts it")
    max_gamma: int = Field(32, ge=1)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def model_post_init(self, context: Any) -> None:
        judge = self.verifier.model.model if self.verifier is not None else self.target.model
        self.model = self.model or f"{judge}+speculative"

    @classmethod
    def remote(
        cls,
        draft: LocalChatModel,
        server: PromptScorer,
        *,
        ngram: bool = False,
        tolerance: Tolerance | None = None,
        **kwargs: Any,
    ) -> SpeculativeChatModel:
        """``draft`` (in-process) drafts for the model behind ``server``, which verifies.

        The draft renders and tokenizes, so it must share the server model's
        tokenizer (checked). Greedy only: the server reports top-N log-probs.
        ``tolerance`` keeps some drafted tokens the server would not have picked.
        """
        drafter: Drafter = ModelDrafter(draft)
        if ngram:
            drafter = CombinedDrafter(NgramDrafter(), ModelDrafter(draft))
        verifier = RemoteVerifier(server, twin=draft.engine, tolerance=tolerance or Tolerance())
        return cls(target=draft, drafter=drafter, verifier=verifier, **kwargs)

    @property
    def _llm_type(self) -> str:
        return "collab-speculative"

    def _load_engine(self) -> SpeculativeEngine:
        return SpeculativeEngine(
            self.target.engine, self.drafter, self.verifier, gamma=self.gamma,
            max_gamma=self.max_gamma, name=self.model,
        )  # fmt: skip

    @property
    def decoder(self) -> SpeculativeDecoder:
        """The decoding loop (its cost model and the last call's statistics)."""
        engine = self.engine
        if not isinstance(engine, SpeculativeEngine):
            raise CapabilityError(f"{self.model} does not decode speculatively")
        return engine.decoder
