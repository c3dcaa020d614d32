"""Queues in front of models: an in-process model answers one request at a time, a remote
endpoint a bounded number; the rest wait in order.

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
    """``capacity`` holders at a time, the rest waiting in order, up to ``max_queue``."""

    def __init__(self, max_queue: int = 64, capacity: int = 1) -> None:
        self.max_queue, self.capacity = max_queue, capacity
        self._waiting = 0
        # asyncio locks belong to one event loop; a model used from several (tests, threads
        # that run their own loop) gets one per loop, and engine.lock still keeps them apart.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
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
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop) or self._locks.setdefault(
            loop, asyncio.Semaphore(self.capacity)
        )
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


_ENDPOINTS: dict[tuple[str, int], ModelQueue] = {}


def endpoint_queue(base_url: str, capacity: int) -> ModelQueue:
    """The queue of a remote endpoint: ``capacity`` requests in flight, the rest waiting."""
    key = (base_url, capacity)
    return _ENDPOINTS.setdefault(key, ModelQueue(max_queue=2**31, capacity=capacity))
