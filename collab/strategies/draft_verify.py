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
        approved = isinstance(verdict, Verdict) and verdict.approve
        trace.extra["approved"] = approved
        if approved:
            trace.extra["llm_output_tokens_saved"] = drafted - spent
            trace.reason = "the LLM approved the SLM's draft"
            yield from answer_chunks(draft, trace)
            return
        trace.reason = (
            "the LLM rejected the SLM's draft and corrected it"
            if isinstance(verdict, Verdict)
            else "the LLM's review could not be read: the LLM answers"
        )
        trace.escalations.append("draft corrected")
        correct = [HumanMessage(CORRECT.format(question=question_text(messages),
                                               draft=text_content(draft.content)))]  # fmt: skip
        yield from relay(self.llm, correct, "llm", trace, **kwargs)
