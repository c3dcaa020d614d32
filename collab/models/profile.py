"""What a model can do, as data: one capability profile for every model a strategy is handed.

Collab's own models describe themselves (``collab_profile()``); any other
LangChain chat model gets a profile from what it declares (``metadata``, a
``base_url``) and what LangChain's own model profile says. Nothing outside
``collab.models`` asks which class a model is: it asks its profile.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field

from collab.errors import CapabilityError
from collab.models.base import ChatTokenModel
from collab.trace import Location, Price

TokenAccess = Literal["none", "exact", "top_n"]


DEFAULT_TOOL_CALL_THRESHOLD = 0.002  # for models never calibrated


class ModelProfile(BaseModel):
    """Where a model runs and what it can do."""

    name: str
    location: Location = Field(
        description="local: the data stays on this machine (in-process, or a server on a "
        "loopback address); remote: it leaves"
    )
    token_access: TokenAccess = Field(
        "none",
        description="token-level access: exact log-probabilities of every token (in-process), "
        "only the top N (llama-cpp-python's server), or none",
    )
    prompt_logprobs: bool = Field(False, description="scores a given text in one pass")
    token_prompts: bool = Field(False, description="takes prompts as token ids, not only text")
    tool_calls: bool = True
    structured_output: bool = True
    context_length: int | None = None
    price: Price = Field(default_factory=Price)
    tool_call_threshold: float = Field(
        DEFAULT_TOOL_CALL_THRESHOLD,
        description="tool_choice='auto': the probability of opening a call at which the model "
        "calls; calibrated per model on BFCL (bench/tool_choice.py) where known",
    )


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_URL_FIELDS = ("base_url", "openai_api_base", "api_base", "endpoint_url")


def declared_location(model: Any) -> Location | None:
    """The location a model declares: its ``location`` field or ``metadata["location"]``."""
    for value in (getattr(model, "location", None), (getattr(model, "metadata", None) or {})):
        if isinstance(value, dict):
            value = value.get("location")
        if value in ("local", "remote"):
            return value  # type: ignore[no-any-return]
    return None


def location_of(model: Any) -> Location:
    """Where ``model`` runs: as declared; else local if it is reached on a loopback address.

    A model that says nothing is taken as remote: privacy errs on the side of
    the data leaving.
    """
    declared = declared_location(model)
    if declared is not None:
        return declared
    for name in _URL_FIELDS:
        url = getattr(model, name, None)
        if isinstance(url, str) and url:
            return "local" if is_loopback(url) else "remote"
    return "remote"


def profile_of(model: Any) -> ModelProfile:
    """The capability profile of any chat model."""
    own = getattr(model, "collab_profile", None)
    if callable(own):
        profile = own()
        if isinstance(profile, ModelProfile):
            return profile
    lc: dict[str, Any] = getattr(model, "profile", None) or {}
    name = next(
        (
            v
            for v in (getattr(model, a, None) for a in ("model", "model_name"))
            if isinstance(v, str)
        ),
        type(model).__name__,
    )
    return ModelProfile(
        name=name,
        location=location_of(model),
        tool_calls=bool(lc.get("tool_calling", True)),
        structured_output=bool(lc.get("structured_output", True)),
        context_length=lc.get("max_input_tokens"),
    )


def require(model: Any, purpose: str, *, token_access: TokenAccess = "exact") -> ChatTokenModel:
    """``model`` as a token-level model, or a CapabilityError saying what ``purpose`` needs."""
    profile = profile_of(model)
    enough = {"exact": ("exact",), "top_n": ("exact", "top_n"), "none": ("exact", "top_n", "none")}
    if profile.token_access not in enough[token_access]:
        raise CapabilityError(
            f"{profile.name} has {profile.token_access} token-level access; {purpose} needs "
            f"{token_access}",
            hint="use an in-process model (LlamaCppChatModel, TransformersChatModel) for this, "
            "or pass your own scorer or signal",
        )
    if not isinstance(model, ChatTokenModel):
        raise CapabilityError(
            f"{profile.name} cannot render its own prompts, which {purpose} needs",
            hint="use an in-process model for this, or pass your own scorer or signal",
        )
    return model
