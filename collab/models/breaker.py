"""A circuit breaker per endpoint: a server that keeps failing is skipped until it answers again.

After ``threshold`` calls in a row fail (each after its own retries), the
endpoint is marked down: calls fail at once, without a request, so a fallback
answers in milliseconds instead of after the whole retry budget. After
``cooldown_s`` one call goes through as a probe; if it succeeds traffic flows
again, if it fails the endpoint stays down for twice as long (up to
``max_cooldown_s``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from collab.errors import ModelUnavailableError


@dataclass
class Breaker:
    threshold: int = 2
    cooldown_s: float = 5.0
    max_cooldown_s: float = 60.0
    failures: int = 0
    down_until: float = 0.0
    probing: bool = False
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _wait_s: float = 0.0

    def before_call(self, where: str) -> None:
        """Raise at once while ``where`` is marked down; let one probe through after the wait."""
        with self._lock:
            if self.failures < self.threshold:
                return
            now = time.monotonic()
            if now >= self.down_until and not self.probing:
                self.probing = True  # this call is the probe
                return
            left = max(0.0, self.down_until - now)
        raise ModelUnavailableError(
            f"{where} is marked down after {self.failures} failed calls in a row "
            f"(last: {self.last_error}); collab tries it again in {left:.0f}s",
            hint="the fallback answers meanwhile; check the server",
        )

    def succeeded(self) -> None:
        with self._lock:
            self.failures, self.probing, self._wait_s = 0, False, 0.0

    def failed(self, error: str) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = error[:200]
            if self.failures >= self.threshold:
                wait = self.cooldown_s if not self._wait_s else 2 * self._wait_s
                self._wait_s = min(wait, self.max_cooldown_s)
                self.down_until = time.monotonic() + self._wait_s
            self.probing = False


_BREAKERS: dict[str, Breaker] = {}
_LOCK = threading.Lock()


def breaker_for(endpoint: str) -> Breaker:
    """The one breaker of ``endpoint`` in this process."""
    with _LOCK:
        return _BREAKERS.setdefault(endpoint, Breaker())
