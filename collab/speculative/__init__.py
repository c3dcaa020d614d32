"""Token-level speculative decoding: drafters, verifiers, the acceptance rule and the loop."""

from collab.speculative.decoder import CostModel, SpecStats, SpeculativeDecoder
from collab.speculative.drafters import CombinedDrafter, Draft, Drafter, ModelDrafter, NgramDrafter
from collab.speculative.engine import SpeculativeChatModel, SpeculativeEngine
from collab.speculative.verifiers import LocalVerifier, RemoteVerifier, Tolerance, Verifier

__all__ = [
    "CombinedDrafter",
    "CostModel",
    "Draft",
    "Drafter",
    "LocalVerifier",
    "ModelDrafter",
    "NgramDrafter",
    "RemoteVerifier",
    "SpecStats",
    "SpeculativeChatModel",
    "SpeculativeDecoder",
    "SpeculativeEngine",
    "Tolerance",
    "Verifier",
]
