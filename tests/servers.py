"""Real model servers shared by the whole test session (started once, on first use)."""

from __future__ import annotations

import atexit

from collab.models import catalog
from collab.models.local_server import LocalLLMServer

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
