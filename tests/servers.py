"""Real model servers shared by the whole test session (started once, on first use), and
``collab serve`` started as a user starts it."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from collab.models import catalog
from collab.models.local_server import LocalLLMServer, free_port

SMOL = "smollm2-135m"
_servers: dict[str, LocalLLMServer] = {}


def smol_server() -> LocalLLMServer:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2, prompt log-probs enabled."""
    if SMOL not in _servers:
        server = LocalLLMServer(
            catalog.resolve(SMOL), alias=SMOL, n_ctx=2048, n_threads=2, logits_all=True
        )
        server.start()
        atexit.register(server.stop)
        _servers[SMOL] = server
    return _servers[SMOL]


def stop_all() -> None:
    for server in _servers.values():
        server.stop()
    _servers.clear()


@contextmanager
def collab_serve(config: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``collab serve --config config`` in its own process (one llama.cpp thread); yields its
    URL and the process, and stops it after."""
    port = free_port()
    collab = Path(sys.executable).parent / "collab"
    env = {**os.environ, "COLLAB_N_THREADS": "1"}
    server = subprocess.Popen(
        [str(collab), "serve", "--port", str(port), "--config", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if server.poll() is not None:
                raise RuntimeError(f"collab serve exited: {server.communicate()[0]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base, server
    finally:
        if server.poll() is None:
            server.terminate()
        server.communicate(timeout=30)
