"""Constrained decoding: as fast as free decoding, the same greedy output, and calls that end.

The reference is llama-cpp-python's own grammar sampler, which masks the
whole vocabulary at every step; collab checks only the token it drew.
"""

from __future__ import annotations

import itertools

import pytest
from langchain_core.messages import HumanMessage
from llama_cpp.llama_grammar import LlamaGrammar
from pydantic import BaseModel, Field

from collab.models.constrained import ArrayRepeats
from collab.models.decoding import RunStats, decode_text
from collab.models.engine import Grammar, Sampling
from collab.models.llamacpp import LlamaCppChatModel, LlamaCppEngine
from collab.models.tool_format import MAX_ARRAY_ITEMS, bounded, to_openai_tools, tool_call_schema
from tests.test_llamacpp import PROMPTS, TOOLS


def reference(engine: LlamaCppEngine, prompt: list[int], schema: dict, budget: int) -> str:
    """Greedy decoding under llama-cpp-python's full-vocabulary grammar sampler."""
    engine.logits(prompt[:-1], len(prompt) - 1)
    grammar = LlamaGrammar.from_string(engine._gbnf(schema))
    out: list[int] = []
    for token in engine.llama.generate(prompt, temp=0.0, top_k=40, top_p=0.95, min_p=0.0,
                                       repeat_penalty=1.0, grammar=grammar):  # fmt: skip
        if engine.is_eog(token) or len(out) >= budget:
            break
        out.append(token)
    return engine.detokenize(out)


@pytest.mark.parametrize("asked", PROMPTS[:6])
def test_greedy_calls_equal_the_full_vocabulary_grammar(slm: LlamaCppChatModel, asked: str) -> None:
    engine = slm.engine
    specs = to_openai_tools(TOOLS)
    schema = tool_call_schema(specs, [t["function"]["name"] for t in specs])
    prompt = engine.encode_prompt(
        slm.render([HumanMessage(asked)], specs) + slm.call_opening(specs)
    )
    greedy = Sampling(temperature=0.0, max_tokens=200, stop=[])
    with engine.lock:
        ours = "".join(decode_text(engine, prompt, greedy, Grammar(schema), RunStats()))
        theirs = reference(engine, prompt, schema, 200)
    assert ours == theirs


def test_sampled_calls_stay_inside_the_grammar(slm: LlamaCppChatModel) -> None:
    bound = slm.bind_tools(TOOLS, tool_choice="any")
    for seed in range(4):
        call = bound.invoke(PROMPTS[0], temperature=1.2, seed=seed).tool_calls[0]
        assert call["name"] in {t.__name__ for t in TOOLS}


class OrderFood(BaseModel):
    """Order food for delivery."""

    items: list[str] = Field(description="the dishes to order")
    address: str


def test_an_array_that_repeats_ends_within_its_budget(slm: LlamaCppChatModel) -> None:
    # SmolLM2 writes "pizza" again and again here: the repeat ends the array.
    asked = "Order pizza, pizza, pizza and pizza to 1 Main Street."
    message = slm.bind_tools([OrderFood], tool_choice="any").invoke(asked)
    (call,) = message.tool_calls
    items = call["args"]["items"]
    assert message.response_metadata["repeats_cut"] >= 1
    assert 1 <= len(items) <= MAX_ARRAY_ITEMS
    assert all(a != b for a, b in itertools.pairwise(items))
    assert call["args"]["address"]
    assert message.usage_metadata and message.usage_metadata["output_tokens"] < 512


def test_arrays_get_a_bound_and_repeats_are_found() -> None:
    assert bounded({"type": "array", "items": {"type": "string"}})["maxItems"] == MAX_ARRAY_ITEMS
    assert bounded({"type": "array", "maxItems": 3})["maxItems"] == 3
    for text, cut in [
        ('{"a": ["x", "y", "y"]}', '{"a": ["x", "y"]'),
        ('{"a": [{"n": 1}, {"n": 1}]}', '{"a": [{"n": 1}]'),
        ('{"s": "[1, 1]", "a": [1, 2]}', None),
        ('{"q": "a\\"b", "a": ["\\\\", "\\\\"]}', '{"q": "a\\"b", "a": ["\\\\"]'),
    ]:
        watch, at = ArrayRepeats(), None
        for ch in text:
            at = watch.feed(ch)
            if at is not None:
                break
        assert (None if at is None else watch.text[:at] + "]") == cut
