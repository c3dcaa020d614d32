"""The one error hierarchy of collab: every error says what failed, why, and what to do."""

from __future__ import annotations


class CollabError(Exception):
    """Base of every error collab raises on purpose.

    ``hint`` is the "what to do" part, kept separate so that callers (the CLI,
    the server) can show it on its own line. ``status``, ``kind`` and ``code``
    say whose move it is, as an HTTP status and OpenAI's error type and code:
    the caller's mistake is a 4xx, the model's unexpected output 502, a model
    that cannot be reached or loaded 503.
    """

    status = 500
    kind = "server_error"
    code = "internal"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  -> {hint}" if hint else message)


class ConfigurationError(CollabError, ValueError):
    """The developer asked for something that cannot work (bad setting, schema, file)."""

    status, kind, code = 400, "invalid_request_error", "invalid_value"


class ModelNotFoundError(ConfigurationError, FileNotFoundError):
    """A model name or path that resolves to no file."""


class ModelLoadError(CollabError):
    """A model file exists but cannot be loaded (corrupt, truncated, wrong format)."""

    status, kind, code = 503, "server_error", "model_not_loaded"


class ContextLengthError(CollabError, ValueError):
    """The prompt (plus the tokens asked for) does not fit in the model's context."""

    status, kind, code = 400, "invalid_request_error", "context_length_exceeded"


class ModelUnavailableError(CollabError, ConnectionError):
    """A remote model did not answer: server down, timed out or refusing after retries."""

    status, kind, code = 503, "server_error", "llm_unavailable"


class CapabilityError(CollabError, NotImplementedError):
    """The model or server lacks a capability the caller needs (log-probs, tools, ...)."""

    status, kind, code = 400, "invalid_request_error", "unsupported"


class TextRoundTripError(CapabilityError):
    """Token ids that a text-only server would read back as other tokens."""


class ModelOutputError(CollabError):
    """The model answered, but not in the shape asked for (unparseable tool call, ...)."""

    status, kind, code = 502, "server_error", "model_output"


class PolicyError(CollabError):
    """The policy forbids answering this request (sensitive data it may not handle)."""

    status, kind, code = 400, "invalid_request_error", "policy_refused"
