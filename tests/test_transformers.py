"""The transformers backend, loading the same SmolLM2 GGUF as llama.cpp."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="the transformers extra is not installed")

from collab.models.base import vocab_fingerprint
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.transformers import TransformersChatModel
from tests.test_llamacpp import BY_NAME, TOOLS

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n   ",
    "1, 2, 3, 4,",
    "Once upon a time",
    "The opposite of hot is",
    "import numpy as",
    "Monday, Tuesday,",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "The sun rises in the",
    "for i in range(",
    "Water freezes at zero degrees",
    "Hello, my name",
]
NEAR_TIE = 0.5  # nats between the top two tokens


@pytest.fixture(scope="module")
def hf() -> TransformersChatModel:
    return TransformersChatModel(model="smollm2-135m", temperature=0.0, max_tokens=32, n_ctx=2048)


def _top2(row: np.ndarray) -> tuple[int, float]:
    first, second = np.sort(row)[-2:][::-1]
    return int(np.argmax(row)), float(first - second)


def test_greedy_next_token_agrees_with_llama_cpp(
    hf: TransformersChatModel, slm: LlamaCppChatModel
) -> None:
    # Quantized (llama.cpp) and dequantized (transformers) arithmetic may order a
    # near-tie differently; wherever the choice is decisive they must agree.
    assert vocab_fingerprint(hf) == vocab_fingerprint(slm)
    decisive = 0
    for text in PROMPTS:
        ids = slm.tokenize(text)
        assert hf.tokenize(text) == ids
        hf_top, hf_margin = _top2(hf.logits(ids, len(ids) - 1)[0])
        cpp_top, cpp_margin = _top2(slm.logits(ids, len(ids) - 1)[0])
        if min(hf_margin, cpp_margin) >= NEAR_TIE:
            decisive += 1
            assert hf_top == cpp_top, (text, hf_top, cpp_top)
    assert decisive >= len(PROMPTS) * 2 // 3


def test_continuation_logprobs_close_to_llama_cpp(
    hf: TransformersChatModel, slm: LlamaCppChatModel
) -> None:
    prompt = slm.tokenize("The quick brown fox")
    cont = slm.tokenize(" jumps over the lazy dog.")
    # Different kernels over the same quantized weights: close, not bit-equal.
    assert hf.continuation_logprobs(prompt, cont) == pytest.approx(
        slm.continuation_logprobs(prompt, cont), abs=0.35
    )


def test_chat_and_stream(hf: TransformersChatModel) -> None:
    answer = hf.invoke("What is the capital of France?")
    assert isinstance(answer.content, str) and answer.content.strip()
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] > 0
    chunks = list(hf.stream("Name a colour."))
    assert chunks[-1].usage_metadata is not None


def test_constrained_tool_call(hf: TransformersChatModel) -> None:
    message = hf.bind_tools(TOOLS, tool_choice="any").invoke("Weather in Rome in celsius?")
    (call,) = message.tool_calls
    BY_NAME[call["name"]].model_validate(call["args"])
