"""Real model servers shared by the whole test session (started once, on first use)."""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any

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


class AppServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.server.config.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
