"""``BackgroundServer``: an app served on 127.0.0.1 from a thread of this process.

For scripts, notebooks and tests that want ``collab serve`` without a second process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from collab.errors import ConfigurationError
from collab.models.local_server import free_port


class BackgroundServer:
    """Serves ``app`` with uvicorn in a daemon thread; ``url`` is its address once started."""

    def __init__(self, app: Any, *, port: int | None = None, startup_timeout_s: float = 30) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port or free_port(), log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + startup_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise ConfigurationError(
                    f"the server did not start on 127.0.0.1:{config.port}",
                    hint="the port may be taken; pass another port=",
                )
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{config.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
