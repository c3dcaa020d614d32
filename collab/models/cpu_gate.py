"""One llama.cpp computation at a time on this machine: a lock collab's processes share.

Each llama.cpp model runs its computations on as many threads as there are cores,
and those threads spin while they wait for work. Two models computing at once
(the SLM in-process and the stand-in LLM server, or two requests to either) ask
for twice the cores, and their spinning threads starve each other: a 40-token
answer took 67 s instead of 1.6 s. Behind the gate, every batch a model decodes
waits for the batch in flight, in this process or another collab process, so
the cores go to one model at a time and two busy models share them in turns.

``install()`` puts the gate in front of llama-cpp-python's ``decode`` in this
process (once); the stand-in server installs it too. The lock is a file in the
cache dir. It is off unless the setting ``cpu_gate`` (``COLLAB_CPU_GATE=true``)
is on: turns are per batch, so a small model decoding beside a large one waits
a large model's step for each of its own (``bench/colocated.py``: SmolLM2 kept
0.32x of its speed beside Qwen 1.5B, against 1.5x without the gate).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from collab.config import load_settings


class CpuGate:
    """An exclusive lock on a file, held by one thread of one process at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._threads = threading.RLock()  # this process's threads queue here first
        self._depth = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fd = self._fd
            if self._depth == 0:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(fd, fcntl.LOCK_UN)


_INSTALLED: list[CpuGate] = []
_INSTALLING = threading.Lock()


def install() -> CpuGate | None:
    """Gate every llama.cpp ``decode`` of this process (once); None when turned off."""
    with _INSTALLING:
        if _INSTALLED:
            return _INSTALLED[0]
        settings = load_settings()
        if not settings.cpu_gate:
            return None
        from llama_cpp._internals import LlamaContext

        gate = CpuGate(settings.cache_dir / "cpu.lock")
        LlamaContext.decode = _gated(LlamaContext.decode, gate)  # type: ignore[method-assign]
        _INSTALLED.append(gate)
        return gate


def _gated(decode: Callable[..., Any], gate: CpuGate) -> Callable[..., Any]:
    @functools.wraps(decode)
    def gated(self: Any, batch: Any) -> Any:
        with gate.held():
            return decode(self, batch)

    return gated
