"""The LLM reads the SLM's reply (a tool call, or text) and says whether it would have
written it: one pass of prompt log-probabilities, nothing written.

It needs an in-process SLM (exact tokens) that shares the LLM's tokenizer, and an
LLM that returns prompt log-probabilities: a server (vLLM, the stand-in with
``reads=True``) or an in-process model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from collab.errors import CapabilityError
from collab.messages import text_content
from collab.models.local import LocalChatModel
from collab.models.profile import location_of, profile_of
from collab.speculative import Tolerance
from collab.trace import ModelCall


@dataclass
class Reading:
    """What the LLM made of a reply: ``kept`` if it would have written it; ``read``
    tokens (prompt and reply) it read to say so."""

    kept: bool
    read: int
    gap: float = 0.0  # nats between the LLM's best and the reply's least likely token to it


def reading_call(llm: Any, read: int, written: int = 0, seconds: float = 0.0) -> ModelCall:
    """The LLM's part in the trace: ``read`` tokens in, ``written`` out, at its price."""
    call = ModelCall(
        model=str(getattr(llm, "model", "") or type(llm).__name__), location=location_of(llm),
        role="verifier", input_tokens=read, output_tokens=written, latency_s=seconds,
    )  # fmt: skip
    price = getattr(llm, "price", None)
    if price is not None:
        call.cost_usd = price.cost(read, written)
    return call


def can_read(slm: BaseChatModel, llm: Any) -> str | None:
    """Why ``llm`` cannot read ``slm``'s replies token by token, fast (None: it can).

    Asks a server for its capabilities and tokenizer: call it when the LLM is needed.
    """
    if profile_of(slm).token_access != "exact" or not hasattr(slm, "call_opening"):
        return "the SLM is not in-process, so its exact tokens are unknown"
    if not hasattr(llm, "prompt_logprob_rows"):
        return f"{getattr(llm, 'model', type(llm).__name__)} returns no prompt log-probabilities"
    probe = "def f(x):\n    return {'a': [1, 2.5]}"
    caps = getattr(llm, "server_capabilities", None)
    try:  # a server is asked what it can do, then how it tokenizes
        style = caps().prompt_logprobs if callable(caps) else "in-process"
        if style not in ("vllm", "in-process") or not profile_of(llm).prompt_logprobs:
            return (
                "the LLM reads prompts only by echo, sorting the vocabulary at every token, "
                "or not at all (serve it with vLLM, or make_llm(reads=True))"
            )
        theirs = llm.tokenize(probe, special=False)
    except Exception as exc:  # unreachable, or answering nonsense: it cannot read now
        return f"the LLM could not be asked what it can do ({exc})"
    if theirs != cast(LocalChatModel, slm).tokenize(probe, special=False):
        return "the SLM and the LLM do not share a tokenizer"
    return None


def plain_numbers(text: str) -> str:
    """``text`` with the JSON values in it written again, whole floats as integers: the
    call the LLM reads is the SLM's values, not how it spelled them (``3.0`` for ``3``)."""
    decoder, out, at = json.JSONDecoder(), [], 0
    for start in range(len(text)):
        if start < at or text[start] not in "[{":
            continue
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        out += [text[at:start], json.dumps(_whole(value), ensure_ascii=False)]
        at = end
    return "".join([*out, text[at:]])


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def read_reply(
    slm: LocalChatModel,
    llm: Any,
    messages: Sequence[BaseMessage],
    tools: list[dict[str, Any]],
    reply: AIMessage,
    tolerance: Tolerance | None = None,
) -> Reading:
    """Whether ``llm`` would have written ``reply`` (the SLM's, to ``messages`` with
    ``tools`` in OpenAI form) greedily, token for token, within ``tolerance``.

    A call is read from its JSON after the first token: how a model opens a call (a
    tag, a fence, bare JSON) says only that a call starts, as in ``score_call``; its
    whole numbers are read as integers (see ``plain_numbers``).
    """
    tolerance = tolerance or Tolerance()
    prompt = slm.engine.encode_prompt(slm.render(messages, tools))
    scored = reply.response_metadata.get("tool_call_logprob") or {}
    judged = 0  # the first drafted token judged
    if reply.tool_calls and scored.get("text"):
        prompt += slm.tokenize(slm.call_opening(tools), special=True)
        drafted = slm.tokenize(plain_numbers(str(scored["text"])), special=False)
        judged = 1
    elif reply.tool_calls:
        raise CapabilityError(
            "the SLM's call carries no text to read",
            hint="ask the SLM with score_tool_calls=True",
        )
    else:
        drafted = slm.tokenize(text_content(reply.content), special=False)
    rows = llm.prompt_logprob_rows([*prompt, *drafted], first=len(prompt) - 1)
    judging = list(zip(drafted, rows, strict=False))[judged:]
    kept = bool(judging) and all(
        max(row, key=row.__getitem__) == token or tolerance.keeps(row, token)
        for token, row in judging
    )
    gaps = [max(row.values()) - row.get(token, min(row.values())) for token, row in judging]
    return Reading(kept=kept, read=len(prompt) + len(drafted), gap=max(gaps, default=0.0))
