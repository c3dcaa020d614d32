"""SLM function calling: shortlist tools, call under a grammar, validate, repair or escalate.

``ToolCaller.plan(messages)`` returns the calls to run (or a text answer when no
tool applies). The SLM's calls are decoded under a grammar, so they always parse;
their arguments are then validated with pydantic. A call that does not validate
is repaired once (the SLM is told what is wrong); a call still invalid, or one
the SLM was unsure of, is escalated to the LLM. An invalid call is never returned.
Optional arguments the SLM filled in although the conversation never gave them
are dropped, so the tool uses its default; an argument that only stands for a
value (``type="string"``) makes the call invalid (see ``collab.tools.grounding``).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.messages.tool import ToolCall
from langchain_core.tools import BaseTool

from collab.errors import CapabilityError, CollabError, ConfigurationError
from collab.messages import as_ai_message, call_key, text_content
from collab.models.local import LocalChatModel
from collab.models.profile import profile_of
from collab.models.tool_format import to_openai_tools
from collab.speculative import Tolerance
from collab.tools.grounding import Conversation, drop_ungrounded, placeholder
from collab.tools.reading import can_read, read_reply, reading_call
from collab.tools.select import select_tools
from collab.tools.spec import make_tools, parameters, validate_args
from collab.trace import Trace

REPAIR = "Your call {call} is not valid: {problem}. Call {name} again with arguments that fix this."


@dataclass
class ToolPlan:
    """What the tool caller decided, and what it cost."""

    message: AIMessage  # valid tool calls, or a text answer (no tool applies or none worked)
    trace: Trace = field(default_factory=Trace)
    by: str = "slm"  # "slm", or "llm" after an escalation
    repaired: bool = False
    dropped: list[str] = field(default_factory=list)  # optional arguments nobody gave
    escalation: str | None = None  # why the LLM was asked
    failure: str | None = None  # why no valid call came back, when one was wanted

    @property
    def calls(self) -> list[ToolCall]:
        return list(self.message.tool_calls)


class ToolCaller:
    """The SLM calls tools; the LLM steps in when the SLM's call is invalid or unsure.

    Confidence checks (None: none): ``min_logprob`` escalates a call whose mean
    token log-probability under the free SLM is below it; ``min_name_logprob``
    one whose choice of tool is less likely than that, normalised over the tools
    offered (the SLM's most confident wrong calls pick the wrong tool).
    ``max_tools``: with more tools than this, the most relevant few are offered.
    ``llm_reads``: the LLM reads each valid SLM call (prompt log-probabilities, one
    pass, nothing written) and the call is escalated when the LLM would not have
    written it token for token; None: whenever the LLM can (an in-process SLM sharing
    its tokenizer, an LLM that returns prompt log-probabilities); False (default): never.
    Reading a call means reading its prompt, tool list included: on BFCL the LLM read
    more tokens than answering every call itself, so it is not the default.
    ``read_tolerance``: a ``Tolerance`` under which a call also stands when the LLM
    ranks its tokens nearly as high as its own (default: lossless).
    """

    def __init__(
        self,
        slm: BaseChatModel,
        tools: Sequence[Any],
        *,
        llm: BaseChatModel | None = None,
        max_tools: int = 6,
        parallel: bool = False,
        min_logprob: float | None = None,
        min_name_logprob: float | None = None,
        repair: bool = True,
        ground_optional: bool = True,
        llm_reads: bool | None = False,
        read_tolerance: Tolerance | None = None,
    ) -> None:
        self.slm, self.llm = slm, llm
        self.tools = make_tools(tools)
        if not self.tools:
            raise ConfigurationError("a ToolCaller needs at least one tool")
        if max_tools < 1:
            raise ConfigurationError(f"max_tools={max_tools}", hint="offer at least one tool")
        self.max_tools, self.parallel = max_tools, parallel
        self.min_logprob, self.min_name_logprob = min_logprob, min_name_logprob
        self.repair, self.ground_optional = repair, ground_optional
        if llm_reads and llm is None:
            raise ConfigurationError("llm_reads=True needs an llm", hint="pass llm=")
        self.llm_reads, self.read_tolerance = llm_reads, read_tolerance or Tolerance()
        self._reading: bool | None = False if llm is None or llm_reads is False else None

    def _reads(self) -> bool:
        """Whether the LLM reads the SLM's calls (see ``llm_reads``), decided on first use:
        asking a server what it can do starts or reaches it."""
        if self._reading is not None or self.llm is None:
            return bool(self._reading)
        why_not = can_read(self.slm, self.llm)
        if self.llm_reads and why_not:
            raise CapabilityError(
                f"the LLM cannot read the SLM's calls: {why_not}",
                hint="pass llm_reads=False, or serve the LLM with prompt log-probabilities "
                "(vLLM, make_llm(reads=True))",
            )
        self._reading = why_not is None
        return self._reading

    def shortlist(self, messages: Sequence[BaseMessage]) -> list[BaseTool]:
        asked = " ".join(text_content(m.content) for m in messages if isinstance(m, HumanMessage))
        return select_tools(asked, self.tools, self.max_tools)

    def plan(
        self,
        messages: Sequence[BaseMessage],
        *,
        tool_choice: str | None = "auto",
        options: Mapping[str, Any] | None = None,
    ) -> ToolPlan:
        """Calls for ``messages`` (``tool_choice``: "auto" may answer in text, "any" must call).

        ``options``: call options for every model call (``max_tokens``, ``temperature``, ...).
        """
        messages = convert_to_messages(messages)
        offered = self.shortlist(messages)
        said = Conversation.of(messages)  # what the user gave, before any repair prompt
        plan = ToolPlan(message=AIMessage(content=""))
        ask = functools.partial(
            self._ask, offered=offered, said=said, plan=plan, options=options or {}
        )
        reply, problem = ask(self.slm, messages, tool_choice=tool_choice, role="tool_caller")
        if problem and self.repair and reply is not None and reply.tool_calls:
            bad = next(c for c in reply.tool_calls if self._problem([c], offered, said))
            fix = REPAIR.format(
                call=json.dumps({"name": bad["name"], "arguments": bad["args"]}),
                problem=problem,
                name=bad["name"],
            )
            retry = [*messages, HumanMessage(fix)]
            named = bad["name"] if any(t.name == bad["name"] for t in offered) else "any"
            reply, problem = ask(self.slm, retry, tool_choice=named, role="repair")
            plan.repaired = problem is None
        unsure = self._unsure(reply) if problem is None else None
        if problem is None and unsure is None and reply is not None and self._reads():
            unsure = self._read(messages, offered, reply, plan)
        if problem is None and unsure is None and reply is not None:
            plan.message = self._grounded(reply, said, offered, plan)
            return plan
        plan.escalation = problem or unsure
        if self.llm is None:
            plan.failure = f"the SLM's call was not usable ({plan.escalation}) and no LLM is set"
            plan.message = AIMessage(content=f"I could not make a valid tool call: {problem}")
            return plan
        plan.trace.escalations.append(f"tool call: {plan.escalation}")
        plan.by = "llm"
        reply, problem = ask(self.llm, messages, tool_choice=tool_choice, role="escalation")
        if problem is None and reply is not None:
            plan.message = reply
        else:
            plan.failure = f"the LLM's call was not usable either: {problem}"
            plan.message = AIMessage(content=f"I could not make a valid tool call: {problem}")
        return plan

    async def aplan(
        self, messages: Sequence[BaseMessage], *, tool_choice: str | None = "auto"
    ) -> ToolPlan:
        # The local model must not run on the event loop: the whole plan goes to a thread.
        return await asyncio.to_thread(self.plan, messages, tool_choice=tool_choice)

    # ---- steps -----------------------------------------------------------------

    def _ask(
        self,
        model: BaseChatModel,
        messages: Sequence[BaseMessage],
        *,
        offered: list[BaseTool],
        said: Conversation,
        tool_choice: str | None,
        plan: ToolPlan,
        role: str,
        options: Mapping[str, Any],
    ) -> tuple[AIMessage | None, str | None]:
        """The model's reply and what is wrong with its calls (None: nothing)."""
        kwargs: dict[str, Any] = (
            {**options, "parallel_tool_calls": True} if self.parallel else {**options}
        )
        scored = self.min_logprob is not None or self.min_name_logprob is not None
        scored = scored or (model is self.slm and self._reads())
        if scored and profile_of(model).token_access == "exact":
            kwargs["score_tool_calls"] = True
        try:
            reply = as_ai_message(
                model.bind_tools(offered, tool_choice=tool_choice, **kwargs).invoke(list(messages))
            )
        except CollabError as exc:
            return None, f"{type(exc).__name__}: {exc.message}"
        trace = Trace.from_metadata(reply.response_metadata)
        for call in trace.calls:
            call.role = role
        plan.trace = plan.trace.merge(trace)
        # A call repeated verbatim is meant once (small models loop in a list of calls).
        unique = {call_key(c): c for c in reply.tool_calls}
        reply.tool_calls = list(unique.values())[: None if self.parallel else 1]
        return reply, self._problem(reply.tool_calls, offered, said)

    def _read(
        self, messages: Sequence[BaseMessage], offered: list[BaseTool], reply: AIMessage,
        plan: ToolPlan,
    ) -> str | None:  # fmt: skip
        """The LLM reads the SLM's ``reply``: None if it would have written it, else why not."""
        slm = cast(LocalChatModel, self.slm)
        try:
            reading = read_reply(
                slm, self.llm, messages, to_openai_tools(offered), reply, self.read_tolerance
            )
        except CollabError as exc:  # the LLM cannot be read now: the valid call stands
            plan.trace.extra["llm_read"] = {"failed": exc.message}
            return None
        plan.trace.add(reading_call(self.llm, reading.read))
        plan.trace.extra["llm_read"] = {"kept": reading.kept, "gap": round(reading.gap, 3)}
        return None if reading.kept else "the LLM read the call and would have written another"

    def _problem(
        self, calls: Sequence[Any], offered: list[BaseTool], said: Conversation
    ) -> str | None:
        by_name = {t.name: t for t in offered}
        for call in calls:
            tool = by_name.get(call["name"])
            if tool is None:
                return f"{call['name']!r} is not one of the tools ({', '.join(by_name)})"
            problem = validate_args(tool, call["args"]) or placeholder(call, parameters(tool), said)
            if problem:
                return f"{call['name']}: {problem}"
        return None

    def _grounded(
        self, reply: AIMessage, said: Conversation, offered: list[BaseTool], plan: ToolPlan
    ) -> AIMessage:
        """``reply`` without the optional arguments the conversation never gave."""
        if not self.ground_optional or not reply.tool_calls:
            return reply
        by_name = {t.name: t for t in offered}
        calls = []
        for call in reply.tool_calls:
            kept, dropped = drop_ungrounded(call, parameters(by_name[call["name"]]), said)
            if dropped and self._problem([kept], offered, said) is None:
                plan.dropped += [f"{call['name']}.{d}" for d in dropped]
                call = kept
            calls.append(call)
        return reply.model_copy(update={"tool_calls": calls})

    def _unsure(self, reply: AIMessage | None) -> str | None:
        scored = reply.response_metadata.get("tool_call_logprob") if reply else None
        if reply is None or not reply.tool_calls or not scored:
            return None
        for key, floor, what in (
            ("mean", self.min_logprob, "mean log-probability"),
            ("name", self.min_name_logprob, "log-probability of the tool chosen"),
        ):
            if floor is not None and scored[key] < floor:
                return f"low confidence ({what} {scored[key]:.2f} < {floor})"
        return None
