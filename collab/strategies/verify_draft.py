"""verify_draft: the SLM writes, the LLM reads, and writes only where it disagrees.

The SLM drafts the next tokens of the answer (``draft_tokens``); the LLM reads
prompt and draft in one pass (prompt log-probabilities) and keeps the draft up
to the first token it would not have written greedily, where it writes its own
token; the SLM then drafts again from there. The answer is the LLM's own greedy
answer (lossless), while the LLM writes one token per round. With a ``Tolerance`` it also
keeps drafted tokens it ranks nearly as high as its own (lossy, fewer rounds).
A request with tools is read whole: the SLM's call (or text) stands when the
LLM would have written every token of it, else the LLM replies itself. The
trace counts what the LLM read and what it wrote.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage

from collab.errors import CapabilityError
from collab.models.local import LocalChatModel
from collab.models.profile import profile_of, require
from collab.models.tool_format import to_openai_tools
from collab.privacy import RemoteGate
from collab.speculative import SpeculativeChatModel, Tolerance
from collab.strategies.base import Strategy, answer_chunks, ask, final_chunk, model_name
from collab.tools.reading import read_reply, reading_call
from collab.trace import ModelCall, Trace

# Tokens the SLM drafts per round (it stops earlier at its end of turn). What follows the
# first disagreement is thrown away, so drafting the whole rest of a long answer wastes SLM
# time; a round that keeps all of it costs one written token (the LLM's next one).
DRAFT_TOKENS = 32


def reader(llm: BaseChatModel) -> Any:
    """The LLM as a model that reads prompts: itself, or what an open privacy gate wraps."""
    if isinstance(llm, RemoteGate):
        if llm.enabled:
            raise CapabilityError(
                "verify_draft sends the draft's tokens to the LLM as they are, and this "
                "request's text must be redacted first",
                hint="let the policy pick another strategy for sensitive requests",
            )
        llm = llm.inner
    if not profile_of(llm).prompt_logprobs or not hasattr(llm, "prompt_logprob_rows"):
        raise CapabilityError(
            f"verify_draft needs an LLM server that returns prompt log-probabilities; "
            f"{model_name(llm)} does not",
            hint="serve the LLM with vLLM (prompt_logprobs) or llama-cpp-python with "
            "--logits_all true, or pick cascade or draft_verify",
        )
    return llm


class VerifyDraft(Strategy):
    """The SLM drafts; the LLM reads each draft once and writes only where it disagrees."""

    name = "verify_draft"

    def __init__(
        self,
        slm: BaseChatModel,
        llm: BaseChatModel,
        tolerance: Tolerance | None = None,
        *,
        draft_tokens: int = DRAFT_TOKENS,
    ) -> None:
        # exact token access: an in-process LocalChatModel, whose engine drafts
        drafter = cast(LocalChatModel, require(slm, "verify_draft (an in-process SLM drafts)"))
        self.slm, self.llm, self.tolerance = drafter, reader(llm), tolerance or Tolerance()
        self.model = SpeculativeChatModel.remote(
            drafter, self.llm, tolerance=self.tolerance, gamma=draft_tokens,
            max_gamma=draft_tokens,
        )  # fmt: skip

    def stream(self, messages: Sequence[BaseMessage], **kwargs: Any) -> Iterator[AIMessageChunk]:
        kwargs = {**kwargs, "temperature": 0.0}  # the LLM's greedy answer is what is kept
        if kwargs.get("tools"):
            yield from self._read_reply(messages, kwargs)
            return
        prompt = len(self.slm.engine.encode_prompt(self.slm.render(messages)))
        answer = AIMessageChunk(content="")
        for piece in self.model.stream(list(messages), **kwargs):
            answer += piece
            if piece.content:
                yield AIMessageChunk(content=piece.content, id=piece.id)
        stats = self.model.decoder.stats
        trace = Trace(strategy=self.name)
        slm_call = ModelCall(
            model=model_name(self.slm), location="local", role="drafter",
            input_tokens=prompt, output_tokens=stats.proposed,
        )  # fmt: skip
        trace.add(slm_call)
        trace.add(reading_call(self.llm, stats.read, stats.written, stats.seconds))
        trace.extra["verify_draft"] = stats.summary()
        yield final_chunk(trace, answer.response_metadata)

    def _read_reply(
        self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]
    ) -> Iterator[AIMessageChunk]:
        """With tools: the SLM replies (a call, or text); the LLM reads the reply once and
        keeps it when it would have written every token of it, else writes its own."""
        reply, trace = ask(self.slm, messages, "drafter", **kwargs, score_tool_calls=True)
        trace.strategy = self.name
        tools = to_openai_tools(kwargs["tools"])
        reading = read_reply(self.slm, self.llm, messages, tools, reply, self.tolerance)
        kept = reading.kept
        read = reading_call(self.llm, reading.read, 0)
        trace.add(read)
        trace.extra["verify_draft"] = {"read": read.input_tokens, "written": 0, "kept": kept}
        if not kept:  # the LLM would have replied otherwise: it replies
            reply, written = ask(self.llm, messages, "llm", **kwargs)
            trace = trace.merge(written)
            trace.extra["verify_draft"]["written"] = written.output_tokens
            trace.escalations.append("the LLM read the SLM's reply and would not have written it")
        yield from answer_chunks(reply, trace)
