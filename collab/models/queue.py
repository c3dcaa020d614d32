"""The queue in front of an in-process model: one answer at a time, the rest wait in order.

llama.cpp holds one context per loaded model, so concurrent requests would only
contend for it (``engine.lock`` keeps them apart in threads). Waiting here, on
the event loop, costs no thread: a server with many clients keeps its worker
threads for the one answer being decoded, and requests that go to a remote LLM
never wait here at all. Past ``max_queue`` waiting requests, new ones are refused.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from collab.errors import CollabError


class QueueFullError(CollabError):
    """Too many requests are already waiting for a local model."""

    status, kind, code = 429, "rate_limit_error", "queue_full"


class ModelQueue:
    """One holder at a time, the rest waiting in order, up to ``max_queue``."""

    def __init__(self, max_queue: int = 64) -> None:
        self.max_queue = max_queue
        self._waiting = 0
        # asyncio locks belong to one event loop; a model used from several (tests, threads
        # that run their own loop) gets one per loop, and engine.lock still keeps them apart.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def waiting(self) -> int:
        return self._waiting

    def check(self) -> None:
        """Raise QueueFullError now if a new request could not even wait."""
        if self._waiting >= self.max_queue:
            raise QueueFullError(
                f"{self._waiting} requests are already waiting for the local model",
                hint="retry later, or raise the server's max_queue",
            )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.check()
        lock = self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        self._waiting += 1
        try:
            await lock.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            lock.release()


_QUEUES: weakref.WeakKeyDictionary[Any, ModelQueue] = weakref.WeakKeyDictionary()


def queue_of(engine: Any) -> ModelQueue:
    """The one queue of a loaded model, shared by every chat model over it."""
    found = _QUEUES.get(engine)
    if found is None:
        found = _QUEUES.setdefault(engine, ModelQueue())
    return found
