"""Per-call options every collab model takes, typed; an unknown option is refused, not forwarded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

from collab.errors import ConfigurationError

TaskKind = Literal["chat", "tool_call", "code", "math", "extraction"]


class CallOptions(TypedDict, total=False):
    """What ``invoke``/``stream`` take as keyword arguments on every collab model.

    OpenAI's sampling and tool options mean what the OpenAI API says; the rest
    are collab's own.
    """

    model: str
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    seed: int | None
    tools: list[dict[str, Any]]
    tool_choice: Any
    parallel_tool_calls: bool
    response_format: dict[str, Any]
    # collab's own
    score_tool_calls: bool  # tool_call_logprob in response_metadata (in-process models)
    tool_call_threshold: float  # tool_choice="auto": P(call) at which a call is made
    request_tags: Sequence[str]  # matched by policy rules (CollabChatModel)
    task: TaskKind  # overrides the detected task kind (CollabChatModel)


# Remote models also take what a server understands beyond the fields above.
REMOTE_ONLY = frozenset({"extra_body", "logprobs", "top_logprobs", "n", "presence_penalty",
                         "frequency_penalty", "logit_bias", "user", "extra_headers", "extra_query",
                         "timeout"})  # fmt: skip
# Set by LangChain itself (with_structured_output) and removed before the call is made.
_LANGCHAIN = frozenset({"ls_structured_output_format"})
OPTIONS = frozenset(CallOptions.__annotations__) | _LANGCHAIN


def check_options(
    options: Mapping[str, Any], who: str, *, extra: frozenset[str] = frozenset()
) -> None:
    """Refuse options ``who`` does not know, naming them and the ones it does."""
    unknown = sorted(set(options) - OPTIONS - extra)
    if unknown:
        known = ", ".join(sorted((OPTIONS | extra) - _LANGCHAIN))
        raise ConfigurationError(
            f"{who} got unknown call option(s) {', '.join(map(repr, unknown))}",
            hint=f"known options: {known}"
            + ("" if extra else "; server-specific parameters go to a remote model's extra_body"),
        )
