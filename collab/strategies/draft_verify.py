"""Draft then verify: the SLM writes the whole answer; the LLM approves it or corrects it.

Approving costs the LLM a few output tokens instead of the whole answer; the
trace counts the LLM output tokens saved against the LLM answering alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from pydantic import BaseModel, Field

from collab.models.base import text_content
from collab.strategies.base import Strategy, answer_chunks, ask, question_text, relay, trace_of
from collab.trace import Trace, stopwatch


class Verdict(BaseModel):
    """The LLM's review of a draft."""

    approve: bool = Field(description="true when the draft is correct and complete as it is")
    # An explicit bound: whole answers must fit (strings are otherwise bounded short).
    answer: str = Field(
        "", max_length=8000, description="when not approved: the corrected, complete answer"
    )


REVIEW = (
    "Review a draft answer written by an assistant.\n\nRequest:\n{question}\n\nDraft answer:\n"
    "{draft}\n\nIf the draft is correct and complete, approve it and leave answer empty. "
    "Otherwise set approve to false and write the corrected, complete answer."
)


class DraftVerify(Strategy):
    name = "draft_verify"

    def __init__(self, slm: BaseChatModel, llm: BaseChatModel) -> None:
        self.slm, self.llm = slm, llm

    def stream(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Iterator[AIMessageChunk]:
        draft, trace = ask(self.slm, messages, "drafter", **kwargs)
        return self.review(messages, draft, trace, **kwargs)

    def review(
        self, messages: Sequence[BaseMessage], draft: AIMessage, trace: Trace, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        """The LLM's review of ``draft`` (with its ``trace``), as the strategy's stream."""
        trace.strategy = self.name
        review = [HumanMessage(REVIEW.format(question=question_text(messages),
                                             draft=text_content(draft.content)))]  # fmt: skip
        reviewer = self.llm.with_structured_output(Verdict, include_raw=True)
        with stopwatch() as watch:
            out = reviewer.invoke(review, max_tokens=kwargs.get("max_tokens"))
        assert isinstance(out, dict)
        raw, verdict = out["raw"], out["parsed"]
        review_trace = trace_of(raw, self.llm, "verifier")
        if len(review_trace.calls) == 1 and not review_trace.calls[0].latency_s:
            review_trace.calls[0].latency_s = watch.elapsed
        trace = trace.merge(review_trace)
        drafted = sum(c.output_tokens for c in trace.calls if c.role == "drafter")
        spent = sum(c.output_tokens for c in trace.calls if c.role == "verifier")
        if not isinstance(verdict, Verdict):  # an unreadable review: the LLM answers itself
            trace.reason = "the LLM's review could not be read: the LLM answers"
            trace.escalations.append("unreadable review")
            yield from relay(self.llm, messages, "llm", trace, **kwargs)
            return
        trace.extra["approved"] = verdict.approve
        trace.extra["llm_output_tokens_saved"] = drafted - spent
        if verdict.approve or not verdict.answer.strip():
            trace.reason = "the LLM approved the SLM's draft"
            final = draft
        else:
            trace.reason = "the LLM corrected the SLM's draft"
            trace.escalations.append("draft corrected")
            final = AIMessage(content=verdict.answer)
        yield from answer_chunks(final, trace)
