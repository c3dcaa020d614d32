"""The llama.cpp chat model against the real SmolLM2 GGUF."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import BaseModel, Field

from collab.errors import ConfigurationError, ContextLengthError, ModelLoadError, ModelNotFoundError
from collab.models.base import vocab_fingerprint
from collab.models.engine import log_softmax
from collab.models.llamacpp import LlamaCppChatModel
from collab.trace import Trace


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str = Field(description="name of the city")
    unit: Literal["celsius", "fahrenheit"] = Field(description="temperature unit")


class Calculate(BaseModel):
    """Evaluate an arithmetic expression."""

    expression: str = Field(description="for example 2 * (3 + 4)")


class SendEmail(BaseModel):
    """Send an email."""

    to: str = Field(description="recipient address")
    subject: str
    urgent: bool = False


class SearchFlights(BaseModel):
    """Search flights between two airports on a date."""

    origin: str
    destination: str
    passengers: int = Field(ge=1, le=9)


TOOLS = [GetWeather, Calculate, SendEmail, SearchFlights]
BY_NAME: dict[str, type[BaseModel]] = {t.__name__: t for t in TOOLS}

PROMPTS = [
    "What's the weather like in Paris right now?",
    "How warm is it in Tokyo, in fahrenheit?",
    "Is it raining in London?",
    "What is 17 times 23?",
    "Compute (144 / 12) + 7 for me.",
    "what's 2 to the power of 10",
    "Email bob@example.com that the meeting moved to 3pm.",
    "Send an urgent email to ops@acme.io with subject 'server down'.",
    "Tell alice@corp.com by email: lunch is ready.",
    "Find flights from JFK to LAX for 2 people.",
    "I need a flight from Berlin to Rome for one passenger.",
    "Search flights SFO to NRT, 3 travellers.",
    "Temperature in Cairo in celsius please.",
    "Square root of 81 plus 4?",
    "Weather forecast for Sydney",
    "Notify team@startup.dev by mail with subject 'release done'.",
    "Flights from Madrid to Lisbon for 4.",
    "What's 3.5 * 8?",
    "Should I take an umbrella in Seattle today?",
    "Book me a search for flights Boston to Chicago, 2 adults.",
]


def test_invoke_reports_usage_and_trace(slm: LlamaCppChatModel) -> None:
    result = slm.invoke("What is the capital of France?")
    assert isinstance(result, AIMessage)
    assert isinstance(result.content, str) and result.content.strip()
    assert result.usage_metadata is not None
    assert result.usage_metadata["input_tokens"] > 5
    assert 0 < result.usage_metadata["output_tokens"] <= 48
    trace = Trace.from_metadata(result.response_metadata)
    (call,) = trace.calls
    assert call.location == "local" and call.model == "smollm2-135m"
    assert call.output_tokens == result.usage_metadata["output_tokens"]
    assert call.cost_usd == 0.0


def test_greedy_is_deterministic_and_max_tokens_holds(slm: LlamaCppChatModel) -> None:
    a = slm.invoke("Write a long story about a dragon.", max_tokens=12)
    b = slm.invoke("Write a long story about a dragon.", max_tokens=12)
    assert a.content == b.content
    assert a.usage_metadata is not None and a.usage_metadata["output_tokens"] == 12
    assert a.response_metadata["finish_reason"] == "length"


def test_stop_sequence_cuts_output(slm: LlamaCppChatModel) -> None:
    full = slm.invoke("Count from 1 to 10, separated by commas.", max_tokens=40)
    assert isinstance(full.content, str) and "5" in full.content
    cut = slm.invoke("Count from 1 to 10, separated by commas.", max_tokens=40, stop=["5"])
    assert isinstance(cut.content, str)
    assert "5" not in cut.content and full.content.startswith(cut.content)
    assert cut.response_metadata["finish_reason"] == "stop"


def test_stream_yields_pieces_then_usage(slm: LlamaCppChatModel) -> None:
    chunks = list(slm.stream("Name three colours."))
    assert len(chunks) > 3
    assert chunks[-1].usage_metadata is not None
    assert all(c.usage_metadata is None for c in chunks[:-1])
    text = "".join(str(c.content) for c in chunks)
    assert text == slm.invoke("Name three colours.").content


def test_tool_choice_any_parses_and_validates_20_of_20(slm: LlamaCppChatModel) -> None:
    bound = slm.bind_tools(TOOLS, tool_choice="any")
    valid = 0
    for prompt in PROMPTS:
        message = bound.invoke(prompt, max_tokens=96)
        assert isinstance(message, AIMessage)
        assert len(message.tool_calls) == 1, (prompt, message)
        call = message.tool_calls[0]
        BY_NAME[call["name"]].model_validate(call["args"])  # raises if schema-invalid
        valid += 1
    assert valid == len(PROMPTS)


def test_named_tool_choice_forces_that_tool(slm: LlamaCppChatModel) -> None:
    message = slm.bind_tools(TOOLS, tool_choice="Calculate").invoke("Hello there!")
    assert [c["name"] for c in message.tool_calls] == ["Calculate"]


def test_tool_choice_none_answers_in_text(slm: LlamaCppChatModel) -> None:
    message = slm.bind_tools(TOOLS, tool_choice="none").invoke("Weather in Paris?")
    assert message.tool_calls == [] and message.content


def test_tool_choice_auto_gives_text_or_a_valid_call(slm: LlamaCppChatModel) -> None:
    bound = slm.bind_tools(TOOLS, tool_choice="auto")
    for prompt in ("Hi, how are you?", "What is the weather in Paris in celsius?"):
        message = bound.invoke(prompt, max_tokens=96)
        if message.tool_calls:
            call = message.tool_calls[0]
            BY_NAME[call["name"]].model_validate(call["args"])
        else:
            assert isinstance(message.content, str) and message.content.strip()


def test_tool_history_round_trip(slm: LlamaCppChatModel) -> None:
    bound = slm.bind_tools(TOOLS, tool_choice="any")
    first = bound.invoke("What is 6 * 7?")
    call = first.tool_calls[0]
    answer = slm.bind_tools(TOOLS).invoke(
        [
            HumanMessage("What is 6 * 7?"),
            first,
            ToolMessage("42", tool_call_id=call["id"] or ""),
        ]
    )
    assert isinstance(answer, AIMessage)


def test_structured_output_is_grammar_constrained(slm: LlamaCppChatModel) -> None:
    class City(BaseModel):
        name: str
        country: str
        population_millions: float

    city = slm.with_structured_output(City).invoke("Describe Paris.", max_tokens=80)
    assert isinstance(city, City)
    raw = slm.with_structured_output(City, include_raw=True).invoke("Describe Rome.")
    assert raw["parsing_error"] is None and isinstance(raw["parsed"], City)


def test_bad_tools_are_refused_at_bind_time(slm: LlamaCppChatModel) -> None:
    bad_schema = {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
    with pytest.raises(ConfigurationError, match="type object"):
        slm.bind_tools([bad_schema])
    with pytest.raises(ConfigurationError, match="no function name"):
        slm.bind_tools([{"type": "function", "function": {"parameters": {}}}])
    with pytest.raises(ConfigurationError, match="names no bound tool"):
        slm.bind_tools(TOOLS, tool_choice="DoesNotExist")


def test_prompt_longer_than_context_is_a_clear_error() -> None:
    small = LlamaCppChatModel(model="smollm2-135m", n_ctx=128, n_threads=2, max_tokens=8)
    with pytest.raises(ContextLengthError, match=r"prompt has \d+ tokens; the context holds"):
        small.invoke("word " * 400)
    # the model still works afterwards
    assert small.invoke("Hi").content


def test_missing_model_file_names_path_and_remedy(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError) as info:
        LlamaCppChatModel(model=str(missing)).invoke("hi")
    assert str(missing) in str(info.value) and "collab models pull" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="catalog"):
        LlamaCppChatModel(model="no-such-model").invoke("hi")


def test_corrupt_model_file_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        LlamaCppChatModel(model=str(junk)).invoke("hi")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(ModelLoadError, match=str(truncated)):
        LlamaCppChatModel(model=str(truncated)).invoke("hi")


async def test_async_calls_do_not_block_the_event_loop(slm: LlamaCppChatModel) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    tick_task = asyncio.create_task(ticker())
    first, second = await asyncio.gather(
        slm.ainvoke("Say hello.", max_tokens=16), slm.ainvoke("Say goodbye.", max_tokens=16)
    )
    done.set()
    await tick_task
    assert first.content and second.content
    assert ticks > 5  # the loop kept running while both generations took turns


async def test_astream_cancellation_frees_the_model(slm: LlamaCppChatModel) -> None:
    async for _ in slm.astream("Tell a long story.", max_tokens=200):
        break  # a client that goes away after the first token
    again = await slm.ainvoke("Say hi.", max_tokens=8)
    assert again.content


def test_token_level_protocol_is_consistent(slm: LlamaCppChatModel) -> None:
    prompt = slm.tokenize("The capital of France is")
    assert slm.detokenize(prompt) == "The capital of France is"
    top = slm.next_token_logprobs(prompt, 5)
    assert len(top) == 5 and top[0][1] >= top[-1][1]
    best, best_lp = top[0]
    (cont_lp,) = slm.continuation_logprobs(prompt, [best])
    assert cont_lp == pytest.approx(best_lp, abs=1e-4)
    probs = np.exp([lp for _, lp in slm.next_token_logprobs(prompt, 1000)])
    assert 0.9 < probs.sum() <= 1.0001


def test_logits_reuse_the_cache_without_changing_results(slm: LlamaCppChatModel) -> None:
    text = slm.tokenize("def add(a, b):\n    return a + b\n\nprint(add(2, 3))")
    fresh = slm.logits(text, 5)
    slm.invoke("Something else entirely.")  # moves the KV cache elsewhere
    shorter = slm.logits(text[:10], 5)  # shares a prefix: evaluated from the cache
    again = slm.logits(text, 5)
    np.testing.assert_allclose(again, fresh, atol=1e-3)
    np.testing.assert_allclose(shorter, fresh[:5], atol=1e-3)


def test_greedy_output_is_argmax_of_logits(slm: LlamaCppChatModel) -> None:
    prompt_text = slm.render([HumanMessage("List two fruits.")])
    prompt = slm.engine.encode_prompt(prompt_text)
    result = slm.invoke("List two fruits.", max_tokens=8)
    generated = slm.tokenize(str(result.content), special=False)[:4]
    logp = log_softmax(slm.logits([*prompt, *generated[:-1]], len(prompt) - 1))
    assert [int(np.argmax(row)) for row in logp] == generated


def test_vocab_fingerprint_matches_same_model(slm: LlamaCppChatModel) -> None:
    other = LlamaCppChatModel(model="smollm2-135m", n_ctx=512, n_threads=2)
    assert vocab_fingerprint(slm) == vocab_fingerprint(other)
