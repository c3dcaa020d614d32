"""What left the machine: each HTTP request a remote model sent, recorded on the wire.

Remote models send through HTTP clients made here; while ``recording()`` is open,
every request they send (retries and failed attempts included) is kept as the
exact bytes of its body. Privacy audits are built from this, not from what the
code meant to send.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

import openai

_RECORDERS: ContextVar[tuple[list[SentRequest], ...]] = ContextVar("collab_sent", default=())


@dataclass(frozen=True)
class SentRequest:
    method: str
    url: str
    body: str  # the body's bytes, as UTF-8 text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record(request: Any) -> None:  # the SDK's httpx Request
    recorders = _RECORDERS.get()
    if recorders:
        body = request.read().decode("utf-8", errors="replace")
        sent = SentRequest(request.method, str(request.url), body)
        for recorder in recorders:
            recorder.append(sent)


async def _arecord(request: Any) -> None:
    _record(request)


def http_client() -> openai.DefaultHttpxClient:
    """The OpenAI SDK's default HTTP client, recording what it sends."""
    return openai.DefaultHttpxClient(event_hooks={"request": [_record]})


def async_http_client() -> openai.DefaultAsyncHttpxClient:
    return openai.DefaultAsyncHttpxClient(event_hooks={"request": [_arecord]})


@contextmanager
def recording() -> Iterator[list[SentRequest]]:
    """The requests sent while the block runs, in order (nested blocks all see them)."""
    sent: list[SentRequest] = []
    token = _RECORDERS.set((*_RECORDERS.get(), sent))
    try:
        yield sent
    finally:
        # closed from another context (a generator collected elsewhere): nothing to undo
        with contextlib.suppress(ValueError):
            _RECORDERS.reset(token)
