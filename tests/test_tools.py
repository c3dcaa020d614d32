"""Tools: definition errors, validation, execution (timeouts, failures), selection, SLM calls."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from typing import Annotated

import numpy as np
import pytest
from langchain_core.messages import HumanMessage, convert_to_messages
from langchain_core.tools import BaseTool
from pydantic import AfterValidator, BaseModel

from collab.errors import ConfigurationError
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.openai import OpenAICompatibleChatModel
from collab.models.tool_format import opens_call, to_openai_tools
from collab.tools import (
    ToolCaller,
    arun_tool_calls,
    make_tool,
    make_tools,
    run_tool_calls,
    select_tools,
    validate_args,
)
from collab.tools.grounding import Conversation, drop_ungrounded, placeholder


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def only_known(code: str) -> str:
    if code != "XK-9931-ZZ":
        raise ValueError("unknown order code; codes look like XK-9931-ZZ")
    return code


def call(name: str, **args: object) -> dict:
    return {"name": name, "args": args, "id": f"id-{name}", "type": "tool_call"}


def test_signatures_that_cannot_be_schemad_are_refused_at_definition() -> None:
    def untyped(a):  # type: ignore[no-untyped-def]
        """Does something."""

    def star(*names: str) -> None:
        """Does something."""

    def nodoc(a: int) -> None:
        pass

    def opaque(conn: socket.socket) -> None:
        """Uses a socket."""

    with pytest.raises(ConfigurationError, match=r"'untyped'.*parameter 'a' has no type"):
        make_tool(untyped)
    with pytest.raises(ConfigurationError, match=r"\*names"):
        make_tool(star)
    with pytest.raises(ConfigurationError, match="no docstring"):
        make_tool(nodoc)
    with pytest.raises(ConfigurationError, match=r"'opaque'.*cannot be schema'd"):
        make_tool(opaque)
    with pytest.raises(ConfigurationError, match="share the name"):
        make_tools([add, make_tool(add)])


def test_pydantic_models_and_tool_dicts_are_tools() -> None:
    class Refund(BaseModel):
        """Refund an order."""

        order_id: str
        amount: float

    refund = make_tool(Refund, requires_approval=True)
    assert refund.name == "Refund"
    assert refund.invoke({"order_id": "A1", "amount": 3}) == '{"order_id":"A1","amount":3.0}'
    described = make_tool(
        {"type": "function", "function": {"name": "math.hypot", "description": "Hypotenuse.",
         "parameters": {"type": "object", "properties": {"x": {"type": "integer"}},
                        "required": ["x"]}}}
    )  # fmt: skip
    assert validate_args(described, {"x": 3}) is None
    assert "required" in (validate_args(described, {}) or "")
    assert "integer" in (validate_args(described, {"x": "three"}) or "")


def test_validation_says_what_is_wrong() -> None:
    tool = make_tool(add)
    assert validate_args(tool, {"a": 1, "b": 2}) is None
    assert "a: Input should be a valid integer" in (validate_args(tool, {"a": "x", "b": 2}) or "")
    assert "unknown arguments: c" in (validate_args(tool, {"a": 1, "b": 2, "c": 3}) or "")


def test_failures_timeouts_and_invalid_calls_become_error_messages() -> None:
    ran: list[str] = []

    def boom(x: str) -> str:
        """Always fails."""
        ran.append(x)
        raise RuntimeError("service down")

    def slow(x: str) -> str:
        """Takes too long."""
        time.sleep(5)
        return x

    async def shout(x: str) -> str:
        """Upper-cases, asynchronously."""
        await asyncio.sleep(0)
        return x.upper()

    tools = [make_tool(add), make_tool(boom), make_tool(slow, timeout_s=0.2), make_tool(shout)]
    out = run_tool_calls(
        [call("add", a=2, b=3), call("boom", x="q"), call("slow", x="q"), call("add", a="two"),
         call("nope"), call("shout", x="hi")],
        tools,
    )  # fmt: skip
    assert [m.status for m in out] == ["success", "error", "error", "error", "error", "success"]
    assert out[0].content == "5" and out[5].content == "HI"
    assert "RuntimeError: service down" in str(out[1].content)
    assert "did not finish within 0.2 s" in str(out[2].content)
    assert "invalid arguments for add" in str(out[3].content)
    assert "no tool named 'nope'" in str(out[4].content)
    assert ran == ["q"]  # the failing tool ran once; the invalid call never ran
    names = ("add", "boom", "slow", "add", "nope", "shout")
    assert [m.tool_call_id for m in out] == [f"id-{n}" for n in names]


async def test_async_execution_keeps_order_and_isolates_failures() -> None:
    def boom(x: str) -> str:
        """Always fails."""
        raise ValueError("bad")

    out = await arun_tool_calls([call("boom", x="a"), call("add", a=1, b=1)],
                                [make_tool(boom), make_tool(add)])  # fmt: skip
    assert [m.status for m in out] == ["error", "success"] and out[1].content == "2"


def test_selection_shortlists_relevant_tools() -> None:
    def get_weather(city: str) -> str:
        """Current weather (temperature, rain) in a city."""
        return city

    def convert_currency(amount: float, to: str) -> str:
        """Convert money between currencies."""
        return to

    filler = []
    for i, topic in enumerate(["email", "calendar", "music", "maps", "notes", "stocks"]):

        def f(q: str) -> str:
            return q

        f.__doc__ = f"Search the user's {topic}."
        filler.append(make_tool(f, name=f"search_{topic}_{i}"))
    tools = [*filler, make_tool(get_weather), make_tool(convert_currency)]
    picked = select_tools("Will it rain in Paris tomorrow? What's the weather?", tools, 2)
    assert "get_weather" in [t.name for t in picked] and len(picked) == 2
    picked = select_tools("convert 20 dollars to euros", tools, 1)
    assert [t.name for t in picked] == ["convert_currency"]


def shout(text: str) -> str:
    """Write the text in capital letters."""
    return text.upper()


def test_optional_arguments_nobody_gave_are_dropped() -> None:
    said = Conversation.of(
        [HumanMessage("Find an acoustic guitar under $1,000 for three kids, 8% off, in New York.")]
    )
    schema = {"required": ["kind"]}
    made = call("find", kind="banjo", maker="Gibson", budget=1000, count=3, discount=0.08)
    kept, dropped = drop_ungrounded(made, schema, said)
    # Required arguments stay whatever they are; optional ones need the conversation's word.
    assert kept["args"] == {"kind": "banjo", "budget": 1000, "count": 3, "discount": 0.08}
    assert dropped == ["maker='Gibson'"]
    # Items of a list are kept one by one; words overlap, case aside ("New York City").
    made = call("find", kind="x", cities=["New York City", "Boston"], years=[1, 2], gift=True)
    kept, dropped = drop_ungrounded(made, schema, said)
    assert kept["args"] == {"kind": "x", "cities": ["New York City"], "gift": True}
    assert dropped == ["cities=['Boston']", "years=[1, 2]"]
    # A value of short words only is checked on those words.
    made = call("find", kind="x", amenities=["Wi-Fi", "NY"], state="ny")
    kept, dropped = drop_ungrounded(made, schema, Conversation.of([HumanMessage("In NY.")]))
    assert kept["args"] == {"kind": "x", "amenities": ["NY"], "state": "ny"}
    assert dropped == ["amenities=['Wi-Fi']"]
    # Numbers are read as written: thousands grouped by commas, coordinates as two numbers.
    said = Conversation.of([HumanMessage("Near 46.603354,1.8883340, for 1,250,000.5 euros.")])
    made = call("find", kind="x", lat=46.603354, lon=1.888334, price=1250000.5, zoom=603354)
    assert drop_ungrounded(made, schema, said)[1] == ["zoom=603354"]


def test_a_value_that_only_stands_for_one_is_refused() -> None:
    said = Conversation.of([HumanMessage("Find an acoustic instrument, and give it a string.")])
    schema = {"properties": {"kind": {"type": "string", "enum": ["wood", "integer"]}}}
    # The type's name or the parameter's, copied from the schema instead of the user's words:
    for args in ({"type": "integer"}, {"maker": "Maker"}, {"size": " Number "}):
        assert placeholder(call("find", **args), schema, said) is not None, args
    # ... unless the enum allows it or the user said it; other values are not judged here.
    for args in ({"kind": "integer"}, {"type": "string"}, {"type": "acoustic"}, {"n": 3}):
        assert placeholder(call("find", **args), schema, said) is None, args


def test_slm_call_parses_validates_and_is_scored(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    caller = ToolCaller(slm, [add, shout], min_logprob=float("-inf"))
    asked = [("user", "What is 2 plus 3?")]
    plan = caller.plan(asked, tool_choice="any")  # type: ignore[arg-type]
    assert plan.by == "slm" and plan.failure is None and len(plan.calls) == 1
    assert plan.calls[0]["name"] == "add"
    assert validate_args(caller.tools[0], plan.calls[0]["args"]) is None
    scored = plan.message.response_metadata["tool_call_logprob"]
    assert scored["mean"] <= 0 and scored["tokens"] > 3
    # It scores the call's text as the tokenizer writes it, whatever tokens the grammar
    # took to it: the mean log-probability of those tokens after the prompt.
    offered = to_openai_tools([add, shout])
    rendered = slm.render(convert_to_messages(asked), offered) + slm.call_opening(offered)
    prompt = slm.engine.encode_prompt(rendered)
    assert json.loads(scored["text"]) == {"name": "add", "arguments": plan.calls[0]["args"]}
    tokens = slm.tokenize(scored["text"], special=False)
    assert scored["tokens"] == len(tokens)
    assert scored["mean"] == pytest.approx(np.mean(slm.continuation_logprobs(prompt, tokens)[1:]))
    # The choice of tool is scored against the other tool offered: "add" is the likelier,
    # and a greedy call goes to the tool that is likeliest as a whole name.
    assert math.log(0.5) < scored["name"] <= 0
    assert max(scored["names"], key=scored["names"].get) == "add"
    assert scored["names"]["add"] == scored["name"]
    # A floor above that choice sends the call to the LLM, with the reason.
    floor = scored["name"] + 0.01
    strict = ToolCaller(slm, [add, shout], llm=remote, min_name_logprob=floor)
    plan = strict.plan(asked, tool_choice="any")  # type: ignore[arg-type]
    assert plan.by == "llm" and "tool chosen" in (plan.escalation or "")


def test_a_greedy_call_goes_to_the_likeliest_whole_tool_name(slm: LlamaCppChatModel) -> None:
    """Token by token SmolLM2 starts "search_mo..." here, though "search_music" is likelier."""

    def search(kind: str, what: str) -> BaseTool:
        def find(query: str) -> str:
            return query

        find.__doc__ = f"Search {what} by title."
        return make_tool(find, name=f"search_{kind}")

    tools = [search("books", "books"), search("movies", "movies"), search("music", "songs")]
    caller = ToolCaller(slm, tools, min_logprob=float("-inf"))
    asked = [("user", "What music was popular in France in the 18th century?")]
    plan = caller.plan(asked, tool_choice="any")  # type: ignore[arg-type]
    scored = plan.message.response_metadata["tool_call_logprob"]
    assert [c["name"] for c in plan.calls] == ["search_music"]
    assert max(scored["names"], key=scored["names"].get) == "search_music"
    assert plan.message.response_metadata["tool_rechosen"] == {
        "from": "search_movies",
        "to": "search_music",
    }


def test_invalid_calls_are_repaired_or_escalated_never_returned(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    """A rule the grammar cannot hold (a validator) fails; the SLM retries, then the LLM."""
    ran: list[str] = []

    def track(code: Annotated[str, AfterValidator(only_known)]) -> str:
        """Track an order by its code."""
        ran.append(code)
        return "shipped"

    caller = ToolCaller(slm, [track], llm=remote)
    plan = caller.plan([("user", "Where is my order?")], tool_choice="any")  # type: ignore[list-item]
    tool = caller.tools[0]
    for c in plan.calls:  # whatever came back is valid
        assert validate_args(tool, c["args"]) is None
    if not plan.calls:
        assert plan.failure and plan.by == "llm" and plan.escalation
        assert any("tool call" in e for e in plan.trace.escalations)
        roles = {c.role for c in plan.trace.calls}
        assert {"tool_caller", "repair", "escalation"} <= roles
    assert ran == []  # planning never runs a tool


def test_tool_choice_none_after_results_answers_and_never_writes_a_call(
    slm: LlamaCppChatModel,
) -> None:
    def weather(city: str) -> str:
        """The weather now in a city."""
        return f"18 degrees in {city}"

    asked = convert_to_messages([
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"name": "weather", "args": {"city": "Paris"}, "id": "c1"}]},
        {"role": "tool", "content": "18 degrees in Paris", "tool_call_id": "c1"},
    ])  # fmt: skip
    for model in (slm.bind_tools([weather], tool_choice="none"), slm):  # tools hidden, or none
        reply = model.invoke(asked, max_tokens=12)
        text = str(reply.content)
        assert text.strip() and not reply.tool_calls, text
        assert opens_call(text) is not True, text  # no call written as text either
