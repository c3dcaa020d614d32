"""Prompt-token log-probabilities from an OpenAI-compatible server's completions endpoint.

The LLM reads a text in one pass and says, per position, how likely each token
was: speculative verification against a server and verify-by-reading rest on
this. Servers speak three dialects (``PromptLogprobStyle``): OpenAI's legacy
``echo``, llama-cpp-python's echo shifted by one position, vLLM's
``prompt_logprobs``. Replies are checked, not trusted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import openai

from collab.errors import CapabilityError, CollabError, ModelOutputError, TextRoundTripError
from collab.models.engine import TOP_N
from collab.models.server_probe import PromptLogprobStyle, ServerCapabilities

UNNAMED = -1  # a row's key for tokens the server named only by ambiguous text
Tokenize = Callable[[str], list[int]]


@dataclass
class PromptLogprobReader:
    """Reads prompt log-probabilities of ``model`` from ``client``'s completions endpoint."""

    client: openai.OpenAI
    model: str
    base_url: str
    caps: ServerCapabilities
    tokenize: Tokenize  # the server's tokenizer
    detokenize: Callable[[list[int]], str]
    error: Callable[[openai.APIError], CollabError]
    _token_of_text: dict[str, int | None] = field(default_factory=dict)

    def completion_prompt(self, tokens: list[int], text: str | None = None) -> list[int] | str:
        """The prompt as token ids, or as text that the server tokenizes to exactly those ids.

        ``text``: the tokens written out by the caller, for text-only servers whose
        own detokenizer drops control tokens (llama-cpp-python's does).
        """
        if self.caps.token_prompts:
            return tokens
        text = self.detokenize(tokens) if text is None else text
        if self.tokenize(text) != tokens:
            raise TextRoundTripError(
                f"{self.base_url} takes text prompts only, and these tokens do not survive "
                "a round trip through text",
                hint="pass token sequences the tokenizer itself produced",
            )
        return text

    def rows(
        self, tokens: list[int], *, first: int = 0, text: str | None = None
    ) -> list[dict[int, float]]:
        """For each position i from ``first``: log-probabilities of the token at i + 1.

        The last row is for the token after all of ``tokens``. Each row holds the
        server's top N by token id; a row is empty where the server reports nothing
        (llama-cpp-python leaves its BOS token out). Where the top N named a token
        only by a text that is not one token (a control token, part of a UTF-8
        character), the row's ``UNNAMED`` entry is the most such a token can have:
        if it is the row's maximum, the argmax is unknown. ``text``: see
        ``completion_prompt``.
        """
        caps = self.caps
        styles: list[PromptLogprobStyle] = (
            [caps.prompt_logprobs] if caps.prompt_logprobs else ["echo", "vllm"]
        )
        prompt = self.completion_prompt(tokens, text)
        for style in styles:
            try:
                rows = self._via(style, tokens, prompt, first)
            except (openai.BadRequestError, openai.UnprocessableEntityError, ModelOutputError):
                continue
            except openai.APIError as exc:
                raise self.error(exc) from exc
            caps.prompt_logprobs = style
            return rows
        raise CapabilityError(
            f"{self.base_url} ({caps.kind}) returns no prompt-token log-probabilities",
            hint="start llama-cpp-python's server with --logits_all true, or use vLLM "
            "(prompt_logprobs)",
        )

    def greedy_next(self, tokens: list[int], text: str | None = None) -> int | None:
        """The server's own greedy choice after ``tokens``; None: it ends the text there.

        For positions where ``rows`` cannot name the argmax.
        """
        try:
            response = self.client.completions.create(
                model=self.model, prompt=self.completion_prompt(tokens, text), max_tokens=1,
                temperature=0.0, extra_body=self.caps.neutral_sampling,
            )  # fmt: skip
        except openai.APIError as exc:
            raise self.error(exc) from exc
        if not response.choices:
            raise self._malformed("a completion without choices")
        choice = response.choices[0]
        if choice.finish_reason == "stop" and not choice.text:
            return None
        ids = self.tokenize(choice.text) if choice.text else []
        if len(ids) != 1:
            raise CapabilityError(
                f"{self.base_url} chose a token it reports only as {choice.text!r}, which "
                "names no single token",
                hint="verify with a server that takes token-id prompts (vLLM), or in-process",
            )
        return ids[0]

    def _malformed(self, what: str) -> ModelOutputError:
        return ModelOutputError(
            f"{self.base_url} answered the log-probability request with {what}",
            hint="the server does not return prompt log-probabilities in a known dialect",
        )

    def _via(
        self, style: PromptLogprobStyle, tokens: list[int], prompt: list[int] | str, first: int
    ) -> list[dict[int, float]]:
        if style == "vllm":
            response = self.client.completions.create(
                model=self.model, prompt=prompt, max_tokens=1, temperature=0.0, logprobs=TOP_N,
                extra_body={"prompt_logprobs": TOP_N},
            )  # fmt: skip
            choice = response.choices[0] if response.choices else None
            entries = (choice.model_extra or {}).get("prompt_logprobs") if choice else None
            last = choice.logprobs if choice else None
            if not isinstance(entries, list) or last is None or not last.top_logprobs:
                raise self._malformed("no prompt_logprobs")
            rows = [
                {int(t): float(v["logprob"]) for t, v in (entry or {}).items()}
                for entry in entries[first + 1 :]
            ]
            rows.append(self._named(last.top_logprobs[0]))
            return rows
        response = self.client.completions.create(
            model=self.model, prompt=prompt, max_tokens=1, echo=True, logprobs=TOP_N,
            temperature=0.0,
        )  # fmt: skip
        lp = response.choices[0].logprobs if response.choices else None
        if lp is None or lp.top_logprobs is None or lp.tokens is None:
            raise self._malformed("no echoed log-probabilities")
        n = len(tokens)
        if style == "echo-shifted":
            positions = _echoed_positions(tokens, len(lp.top_logprobs), self.base_url)
            by_position = dict(zip(positions, lp.top_logprobs, strict=True))
            return [self._named(by_position.get(i) or {}) for i in range(first, n)]
        # OpenAI's legacy semantics: top_logprobs[i] is the distribution of token i.
        if lp.token_logprobs is None or len(lp.top_logprobs) <= n or len(lp.token_logprobs) < n:
            raise self._malformed("fewer echoed log-probabilities than prompt tokens")
        rows = []
        for i in range(first, n):
            row = self._named(lp.top_logprobs[i + 1] or {})
            if i + 1 < n:
                row[tokens[i + 1]] = float(lp.token_logprobs[i + 1])
            rows.append(row)
        return rows

    def _named(self, top: dict[str, float]) -> dict[int, float]:
        """Top log-probabilities keyed by token id; see ``rows`` for UNNAMED."""
        out: dict[int, float] = {}
        unnamed = False
        for text, value in top.items():
            if text not in self._token_of_text:
                ids = self.tokenize(text) if text else []
                self._token_of_text[text] = ids[0] if len(ids) == 1 else None
            token = self._token_of_text[text]
            if token is None:
                unnamed = True
            else:
                out[token] = float(value)
        if unnamed:
            rest = 1.0 - sum(math.exp(v) for v in out.values())
            out[UNNAMED] = math.log(rest) if rest > 0 else -math.inf
        return out


def _echoed_positions(tokens: list[int], entries: int, where: str) -> list[int]:
    """Which prompt positions llama-cpp-python's echoed log-probabilities belong to.

    Its entry for position i is the distribution after token i, but it leaves out
    every position whose next token is its BOS token (and, when the prompt starts
    with BOS, drops that first one). Which token is BOS follows from the count.
    """
    n = len(tokens)
    if entries == n:
        return list(range(n))
    bos = tokens[0]
    skipped = {i for i in range(n - 1) if tokens[i + 1] == bos}
    if n - len(skipped) - 1 == entries:
        skipped.add(n - 1)  # the token it sampled after the prompt was BOS too
    if n - len(skipped) == entries:
        return [i for i in range(n) if i not in skipped]
    candidates = [t for t in set(tokens) if tokens.count(t) == n - entries]
    if len(candidates) == 1:
        return [i for i in range(n) if tokens[i] != candidates[0]]
    raise CapabilityError(
        f"{where} echoed {entries} log-probability entries for {n} prompt tokens, and "
        "they cannot be matched to positions",
        hint="use a server that takes token-id prompts (vLLM) for token-level work",
    )
