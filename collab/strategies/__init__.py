"""Strategies: how one generation is split between the SLM and the LLM, and their signals."""

from collab.strategies.base import Strategy, answer_chunks, ask, gather, relay
from collab.strategies.baselines import LLMOnly, SLMOnly
from collab.strategies.cascade import Cascade, Record, pick_threshold
from collab.strategies.draft_verify import DraftVerify
from collab.strategies.registry import Pair, register_strategy, strategy_names
from collab.strategies.route import Route, SelfAssessment, TrainedScorer
from collab.strategies.signals import (
    SelfVerification,
    TaskCheck,
    TokenLogprob,
    code_passes_examples,
    json_matches,
)
from collab.strategies.speculative import Speculative
from collab.strategies.verify_draft import VerifyDraft

__all__ = [
    "Cascade",
    "DraftVerify",
    "LLMOnly",
    "Pair",
    "Record",
    "Route",
    "SLMOnly",
    "SelfAssessment",
    "SelfVerification",
    "Speculative",
    "Strategy",
    "TaskCheck",
    "TokenLogprob",
    "TrainedScorer",
    "VerifyDraft",
    "answer_chunks",
    "ask",
    "code_passes_examples",
    "gather",
    "json_matches",
    "pick_threshold",
    "register_strategy",
    "relay",
    "strategy_names",
]
