"""Draft then verify: the SLM writes the whole answer; the LLM approves it or corrects it.

Approving costs the LLM a few output tokens instead of the whole answer; the
trace counts the LLM output tokens saved against the LLM answering alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from pydantic import BaseModel, Field

from collab.messages import as_ai_message, question_text, text_content
from collab.strategies.base import Strategy, answer_chunks, ask, relay, trace_of
from collab.trace import Trace, stopwatch


class Verdict(BaseModel):
    """The LLM's review of a draft: a short structured judgement, never the whole answer.

    A corrected answer is written freely afterwards (and streams): whole answers
    under a JSON grammar would need unbounded strings, which grammar converters
    expand into grammars too large to run.
    """

    approve: bool = Field(description="true when the draft is correct and complete as it is")


REVIEW = (
    "Review a draft answer written by an assistant.\n\nRequest:\n{question}\n\nDraft answer:\n"
    "{draft}\n\nIs the draft correct and complete? Approve it only if so."
)
CORRECT = (
    "{question}\n\n---\nA draft answer to the request above was judged wrong or incomplete:"
    "\n\n{draft}\n\n---\nWrite the corrected, complete answer to the request."
)


class DraftVerify(Strategy):
    name = "draft_verify"

    def __init__(self, slm: BaseChatModel, llm: BaseChatModel) -> None:
        self.slm, self.llm = slm, llm

    def stream(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Iterator[AIMessageChunk]:
        draft, trace = ask(self.slm, messages, "drafter", **kwargs)
        return self.review(messages, draft, trace, **kwargs)

    def verdict(
        self, question: str, draft: str, max_tokens: int | None = None
    ) -> tuple[bool | None, Trace]:
        """The LLM's verdict on ``draft`` (None: its review could not be read), and its trace."""
        review = [HumanMessage(REVIEW.format(question=question, draft=draft))]
        reviewer = self.llm.with_structured_output(Verdict, include_raw=True)
        with stopwatch() as watch:
            out = reviewer.invoke(review, max_tokens=max_tokens)
        raw = as_ai_message(out.get("raw") if isinstance(out, dict) else None)
        parsed = out.get("parsed") if isinstance(out, dict) else None
        trace = trace_of(raw, self.llm, "verifier")
        if len(trace.calls) == 1 and not trace.calls[0].latency_s:
            trace.calls[0].latency_s = watch.elapsed
        return (parsed.approve if isinstance(parsed, Verdict) else None), trace

    def review(
        self, messages: Sequence[BaseMessage], draft: AIMessage, trace: Trace, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        """The LLM's review of ``draft`` (with its ``trace``), as the strategy's stream."""
        trace.strategy = self.name
        question, text = question_text(messages), text_content(draft.content)
        if draft.tool_calls:  # the draft is a call: the LLM reviews it as JSON
            calls = [{"name": c["name"], "arguments": c["args"]} for c in draft.tool_calls]
            text = json.dumps(calls[0] if len(calls) == 1 else calls)
        approved, review_trace = self.verdict(question, text, kwargs.get("max_tokens"))
        trace = trace.merge(review_trace)
        drafted = sum(c.output_tokens for c in trace.calls if c.role == "drafter")
        spent = sum(c.output_tokens for c in trace.calls if c.role == "verifier")
        trace.extra["approved"] = bool(approved)
        if approved:
            trace.extra["llm_output_tokens_saved"] = drafted - spent
            trace.reason = "the LLM approved the SLM's draft"
            yield from answer_chunks(draft, trace)
            return
        trace.reason = (
            "the LLM rejected the SLM's draft and corrected it"
            if approved is False
            else "the LLM's review could not be read: the LLM answers"
        )
        trace.escalations.append("draft corrected")
        if kwargs.get("tools"):  # with tools, the LLM replies to the request itself
            yield from relay(self.llm, messages, "llm", trace, **kwargs)
            return
        correct = [HumanMessage(CORRECT.format(question=question, draft=text))]
        yield from relay(self.llm, correct, "llm", trace, **kwargs)
