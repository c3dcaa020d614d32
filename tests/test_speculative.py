"""Speculative decoding: lossless against real models, and the acceptance rule's math."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.messages import HumanMessage

from collab.errors import CapabilityError, ConfigurationError, ModelUnavailableError
from collab.models import catalog
from collab.models.engine import Sampling
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.local_server import LocalLLMServer
from collab.models.openai import OpenAICompatibleChatModel
from collab.speculative import (
    CombinedDrafter,
    CostModel,
    ModelDrafter,
    NgramDrafter,
    RemoteVerifier,
    SpeculativeChatModel,
    SpeculativeDecoder,
)
from collab.speculative.acceptance import accept_greedy, accept_sampling, processed_probs
from collab.speculative.decoder import draft_kind
from collab.trace import Trace
from tests.servers import SMOL

PROMPTS = [
    "Count from 1 to 12.",
    "Write a haiku about the sea.",
    "What is the capital of Italy?",
    "List three prime numbers.",
    "Explain recursion in one sentence.",
    "Write a Python function that adds two numbers.",
    "Name the days of the week.",
    "What colour is the sky?",
    "Spell the word 'banana' letter by letter.",
    "Give me a short greeting in French.",
]

# Chi-square critical values at alpha = 0.001, by degrees of freedom.
CHI2_CRIT = {4: 18.47, 8: 26.12}


def chi_square(counts: np.ndarray, expected_probs: np.ndarray) -> float:
    expected = expected_probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def test_greedy_rule() -> None:
    best = [1, 0, 2]  # the target's argmax after each draft prefix
    assert accept_greedy([1, 0], best) == (2, 2)  # both kept, bonus token 2
    assert accept_greedy([1, 2], best) == (1, 0)  # second rejected, target says 0
    assert accept_greedy([], best[:1]) == (0, 1)


@pytest.mark.parametrize("deterministic", [False, True])
def test_sampling_rule_reproduces_the_target_distribution(deterministic: bool) -> None:
    # Pure math of the rule: first-token frequencies must follow p whatever q is.
    rng = np.random.default_rng(0)
    p = np.array([[0.5, 0.2, 0.15, 0.1, 0.05]] * 2)
    q = np.array([[0.05, 0.1, 0.15, 0.2, 0.5]])
    counts = np.zeros(5)
    for _ in range(20_000):
        x = 4 if deterministic else int(rng.choice(5, p=q[0]))
        kept, nxt = accept_sampling([x], None if deterministic else q, p, rng)
        counts[x if kept else nxt] += 1
    assert chi_square(counts, p[0]) < CHI2_CRIT[4]
    # ... and the test has the power to see a biased sampler (here: plain q).
    biased = np.bincount(rng.choice(5, size=20_000, p=0.9 * p[0] + 0.1 * q[0]), minlength=5)
    assert chi_square(biased.astype(float), p[0]) > CHI2_CRIT[4]


def test_processed_probs_apply_top_k_and_top_p() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32))
    assert np.count_nonzero(processed_probs(logits, 1.0, 2, 1.0)) == 2
    assert np.count_nonzero(processed_probs(logits, 1.0, 0, 0.75)) == 2  # 0.5 + 0.3 >= 0.75
    np.testing.assert_allclose(
        processed_probs(logits, 1.0, 0, 1.0)[0], [0.5, 0.3, 0.15, 0.05], rtol=1e-5
    )


def test_ngram_drafter_continues_the_latest_match() -> None:
    drafter = NgramDrafter(max_ngram=3, min_ngram=2)
    context = [1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3]
    assert drafter.propose(context, 2).tokens == [7, 8]  # the latest [1, 2, 3] is followed by 7 8
    assert drafter.propose([4, 5, 6], 3).tokens == []


def test_ngram_drafter_takes_the_longest_match_and_says_how_long() -> None:
    # The latest match of the tail is 4 tokens deep (-> 8); an older one is 6 deep (-> 9).
    context = [1, 2, 3, 4, 5, 6, 9, 0, 3, 4, 5, 6, 8, 1, 2, 3, 4, 5, 6]
    draft = NgramDrafter().lookup(context, 2)
    assert (draft.tokens, draft.match) == ([9, 0], 6)
    assert NgramDrafter(max_ngram=4).lookup(context, 1).tokens == [8]  # capped: the latest
    assert NgramDrafter().lookup([7, 1, 2], 3).match == 0  # nothing matched


def test_cost_model_sizes_each_kind_of_draft_by_its_own_acceptance() -> None:
    # Pure arithmetic on measured numbers: a long lookup match has earned long drafts,
    # a short one that kept nothing has earned none.
    assert [draft_kind(m) for m in (0, 2, 3, 4, 7, 8, 15, 16, 40)] == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    costs = CostModel(max_gamma=32)
    costs.verify_s = {1: 1.0, 5: 2.0, 9: 3.0, 17: 4.0, 33: 5.0}  # seconds per pass length
    for _ in range(20):
        costs.observe(32, 32, 0.0, 5.0, kind=4)  # copies 16+ deep: every token kept
        costs.observe(4, 0, 0.0, 2.0, kind=1)  # 2-token matches: the first token rejected
    costs.observe(4, 2, 0.25, 2.0, 0.5, kind=0)  # a model's draft: 0.25 s a token
    gamma, speedup = costs.best(4)
    assert gamma == 32 and speedup > 3
    assert costs.best(1)[1] < 1  # predicted to lose: the decoder drafts nothing for it
    assert costs.best(4, limit=6)[0] == 6  # a lookup's continuation is as long as it is
    assert costs.draft_step_s == 0.25  # lookups, which cost nothing, leave it alone


def test_cost_model_is_not_talked_out_of_long_drafts_by_one_slow_pass() -> None:
    # Pure arithmetic: a copy kept whole at 3 tokens, one pass over 5 that happened
    # to run slow. Seen alone, that pass prices 4-token drafts and longer ones out.
    costs = CostModel(max_gamma=32)
    costs.verify_s = {1: 0.10, 4: 0.20, 5: 0.35}
    for _ in range(20):
        costs.observe(3, 3, 0.0, 0.20, kind=4)
    assert costs.pass_cost(5) == pytest.approx(0.25)  # no dearer per token than 4 tokens
    assert costs.position_acceptance(4)[10] > 0.9  # untried: as good as the position before
    assert costs.best(4)[0] == 8  # so it grows to twice the longest pass measured


@pytest.fixture(scope="module")
def target_hf():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch", reason="the transformers extra is not installed")
    from collab.models.transformers import TransformersChatModel

    return TransformersChatModel(model="smollm2-135m", temperature=0.0, max_tokens=24)


def test_greedy_speculation_equals_target_alone_transformers(
    target_hf: LlamaCppChatModel, slm: LlamaCppChatModel
) -> None:
    # SmolLM2 in llama.cpp drafts for SmolLM2 in transformers: a real same-tokenizer pair.
    spec = SpeculativeChatModel(target=target_hf, drafter=ModelDrafter(slm), gamma=4,
                                temperature=0.0, max_tokens=24)  # fmt: skip
    for prompt in PROMPTS:
        alone = target_hf.invoke([HumanMessage(prompt)])
        fast = spec.invoke([HumanMessage(prompt)])
        assert fast.content == alone.content, prompt
    stats = Trace.from_metadata(fast.response_metadata).extra["speculative"]
    assert stats["proposed"] > 0 and stats["acceptance"] > 0.5


def test_greedy_ngram_speculation_equals_target_alone(slm: LlamaCppChatModel) -> None:
    text = "def area(width, height):\n    return width * height\n"
    request = f"Rename `width` to `w` in this code and repeat it:\n{text}"
    spec = SpeculativeChatModel(target=slm, drafter=NgramDrafter(), gamma=6,
                                temperature=0.0, max_tokens=40)  # fmt: skip
    alone = slm.invoke(request, max_tokens=40)
    fast = spec.invoke(request)
    assert fast.content == alone.content
    stats = Trace.from_metadata(fast.response_metadata).extra["speculative"]
    assert stats["accepted"] > 0


def test_sampled_first_tokens_follow_the_target(slm: LlamaCppChatModel) -> None:
    # A hot draft (q far from p) must still give the target's first-token distribution.
    prompt = slm.engine.encode_prompt(slm.render([HumanMessage("Name a fruit.")]))
    sampling = Sampling(temperature=0.8, top_k=0, top_p=1.0, max_tokens=1)
    p = processed_probs(slm.logits(prompt, len(prompt) - 1), 0.8, 0, 1.0)[0]
    top = np.argsort(-p)[:8]
    drafter = ModelDrafter(slm, temperature=1.6, seed=1)
    counts = np.zeros(9)
    with slm.engine.lock:
        for i in range(1500):
            decoder = SpeculativeDecoder(slm.engine, drafter, gamma=1)
            first = next(decoder.generate(prompt, Sampling(**{**sampling.__dict__, "seed": i})))
            hit = np.flatnonzero(top == first)
            counts[hit[0] if hit.size else 8] += 1
    expected = np.append(p[top], 1 - p[top].sum())
    assert chi_square(counts, expected) < CHI2_CRIT[8]


def test_lookup_drafts_end_with_a_copied_end_of_turn(slm: LlamaCppChatModel) -> None:
    # A lookup that copies the prompt's turn boundary stops there: nothing after it is used.
    engine = slm.engine
    context = engine.tokenize("total = 1<|im_end|>\nthen more words total = 1")
    (end,) = engine.tokenize("<|im_end|>")
    assert engine.is_eog(end)
    decoder = SpeculativeDecoder(engine, NgramDrafter(), gamma=8)
    draft, kind = decoder._draft(context, 0, 0, Sampling(temperature=0.0))
    assert draft is not None and draft.tokens == [end] and kind > 0


def test_mismatched_tokenizers_are_refused(slm: LlamaCppChatModel) -> None:
    qwen = LlamaCppChatModel(model="qwen2.5-coder-0.5b", n_ctx=512, n_threads=2)
    with pytest.raises(ConfigurationError, match=r"smollm2-135m.*qwen2\.5-coder-0\.5b"):
        SpeculativeDecoder(qwen.engine, ModelDrafter(slm))


def test_combined_drafter_prefers_ngrams(slm: LlamaCppChatModel) -> None:
    drafter = CombinedDrafter(NgramDrafter(), ModelDrafter(slm))
    context = slm.tokenize("a b c d a b c")
    with slm.engine.lock:
        assert drafter.propose(context, 2).source == "ngram"
        assert drafter.propose(slm.tokenize("hello"), 2).source == "model"


REMOTE_PROMPTS = [
    "Count from 1 to 12.",
    "Write a haiku about the sea.",
    "List three prime numbers.",
    "Write a Python function that adds two numbers.",
    "Name the days of the week.",
    "What colour is the sky?",
    "Spell the word 'banana' letter by letter.",
    "What is 2 + 2? Answer with the number only.",
    "Name three planets.",
    "Say hello.",
]


def first_divergence(slm: LlamaCppChatModel, a: str, b: str) -> tuple[int, int, int]:
    """(position, token in a, token in b) where the two texts' tokens first differ."""
    ta, tb = slm.tokenize(a, special=False), slm.tokenize(b, special=False)
    i = next(i for i in range(min(len(ta), len(tb)) + 1) if ta[i : i + 1] != tb[i : i + 1])
    return i, ta[i], tb[i]


def test_remote_greedy_speculation_equals_the_server_alone(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    # SmolLM2 in-process drafts; llama-cpp-python's server with SmolLM2 verifies.
    spec = SpeculativeChatModel.remote(slm, remote, gamma=15, temperature=0.0, max_tokens=16)
    identical = accepted = 0
    for prompt in REMOTE_PROMPTS:
        alone = str(remote.invoke(prompt, max_tokens=16).content)
        fast = spec.invoke(prompt)
        accepted += Trace.from_metadata(fast.response_metadata).extra["speculative"]["accepted"]
        if fast.content == alone:
            identical += 1
            continue
        # The server's log-probabilities drift with its cache history (by ~0.1 nats on
        # SmolLM2): a divergence is allowed only where its own top two nearly tie.
        i, want, got = first_divergence(slm, alone, str(fast.content))
        context = slm.engine.encode_prompt(slm.render([HumanMessage(prompt)]))
        context += slm.tokenize(alone, special=False)[:i]
        row = dict(remote.next_token_logprobs(context, 5))
        assert want in row and got in row, (prompt, alone, fast.content)
        assert abs(row[want] - row[got]) < 0.2, (prompt, alone, fast.content, row)
    assert identical >= 7
    assert accepted > 0


def test_remote_verifier_needs_text_that_carries_the_tokens(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    # A text-only server without a local twin to write the tokens out: refused up front.
    with pytest.raises(CapabilityError, match="takes only text prompts"):
        RemoteVerifier(remote)
    verifier = RemoteVerifier(remote, twin=slm.engine)
    context = slm.tokenize("The banana")
    assert verifier.argmax(context, len(context) - 1)  # canonical tokens: verified
    # "ban" + "ana" reads back as one token: the server would see other tokens.
    split = slm.tokenize("The ban") + slm.tokenize("ana", special=False)
    assert split != context
    with pytest.raises(CapabilityError, match="round trip through text"):
        verifier.argmax(split, len(split) - 1)


def test_a_server_that_drops_mid_generation_is_an_error(slm: LlamaCppChatModel) -> None:
    server = LocalLLMServer(
        catalog.resolve(SMOL), alias=SMOL, n_ctx=2048, n_threads=2, logits_all=True
    )
    server.start()
    target = OpenAICompatibleChatModel(
        location="remote",  # stands in for a remote LLM
        model=SMOL,
        base_url=server.base_url,
        temperature=0.0,
        max_retries=0,
        timeout=30,
    )
    spec = SpeculativeChatModel.remote(slm, target, temperature=0.0, max_tokens=48)
    stream = spec.stream("Count from 1 to 30.")
    try:
        next(stream)
    finally:
        server.stop()
    with pytest.raises(ModelUnavailableError):
        for _ in stream:
            pass
