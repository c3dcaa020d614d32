"""The one error hierarchy of collab: every error says what failed, why, and what to do."""

from __future__ import annotations


class CollabError(Exception):
    """Base of every error collab raises on purpose.

    ``hint`` is the "what to do" part, kept separate so that callers (the CLI,
    the server) can show it on its own line.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  -> {hint}" if hint else message)


class ConfigurationError(CollabError, ValueError):
    """The developer asked for something that cannot work (bad setting, schema, file)."""


class ModelNotFoundError(ConfigurationError, FileNotFoundError):
    """A model name or path that resolves to no file."""


class ModelLoadError(CollabError):
    """A model file exists but cannot be loaded (corrupt, truncated, wrong format)."""


class ContextLengthError(CollabError, ValueError):
    """The prompt (plus the tokens asked for) does not fit in the model's context."""


class ModelUnavailableError(CollabError, ConnectionError):
    """A remote model did not answer: server down, timed out or refusing after retries."""


class CapabilityError(CollabError, NotImplementedError):
    """The model or server lacks a capability the caller needs (log-probs, tools, ...)."""


class TextRoundTripError(CapabilityError):
    """Token ids that a text-only server would read back as other tokens."""


class ModelOutputError(CollabError):
    """The model answered, but not in the shape asked for (unparseable tool call, ...)."""


class PolicyError(CollabError):
    """The policy forbids answering this request (sensitive data it may not handle)."""
