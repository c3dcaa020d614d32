"""collab: a local small model and a remote large one, working as one."""

from collab.chat_model import CollabChatModel
from collab.errors import (
    CapabilityError,
    CollabError,
    ConfigurationError,
    ContextLengthError,
    ModelLoadError,
    ModelOutputError,
    ModelUnavailableError,
    PolicyError,
)
from collab.options import CallOptions
from collab.policy import Decision, Policy
from collab.trace import ModelCall, Price, Trace

__all__ = [
    "CallOptions",
    "CapabilityError",
    "CollabChatModel",
    "CollabError",
    "ConfigurationError",
    "ContextLengthError",
    "Decision",
    "ModelCall",
    "ModelLoadError",
    "ModelOutputError",
    "ModelUnavailableError",
    "Policy",
    "PolicyError",
    "Price",
    "Trace",
]
