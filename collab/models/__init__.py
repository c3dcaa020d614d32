"""Models: in-process engines under ``LocalChatModel``, OpenAI-compatible servers, profiles."""

from collab.models.base import vocab_fingerprint
from collab.models.defaults import make_llm, make_slm
from collab.models.engine import ChatTemplate, Engine, Sampling
from collab.models.llamacpp import LlamaCppChatModel, LlamaCppEngine
from collab.models.local import LocalChatModel
from collab.models.local_server import LocalLLMServer
from collab.models.openai import OpenAICompatibleChatModel
from collab.models.profile import ModelProfile, location_of, profile_of
from collab.models.scripted import ScriptedChatModel
from collab.models.transformers import TransformersChatModel, TransformersEngine

__all__ = [
    "ChatTemplate",
    "Engine",
    "LlamaCppChatModel",
    "LlamaCppEngine",
    "LocalChatModel",
    "LocalLLMServer",
    "ModelProfile",
    "OpenAICompatibleChatModel",
    "Sampling",
    "ScriptedChatModel",
    "TransformersChatModel",
    "TransformersEngine",
    "location_of",
    "make_llm",
    "make_slm",
    "profile_of",
    "vocab_fingerprint",
]
