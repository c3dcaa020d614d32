"""A local stand-in for the remote LLM: llama-cpp-python's OpenAI-compatible server.

When no remote LLM is configured, collab serves a GGUF on 127.0.0.1 (a free
port) and talks to it over HTTP exactly as it would to a real remote LLM.
Started on first use, stopped at exit; the child also dies with its parent.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import PrivateAttr

from collab.errors import ModelUnavailableError
from collab.models.llamacpp import default_threads
from collab.models.openai import OpenAICompatibleChatModel
from collab.models.server_probe import ServerCapabilities, ServerKind, capabilities_for
from collab.trace import Location

_PR_SET_PDEATHSIG = 1


_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collab-spawn")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalLLMServer:
    """One llama-cpp-python server process serving one GGUF file."""

    def __init__(
        self,
        model_path: Path,
        *,
        alias: str,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        logits_all: bool = False,
        reads: bool = False,
        port: int | None = None,
        startup_timeout_s: float = 180.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.model_path = model_path
        self.alias = alias
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        # reads: prompt log-probabilities at speed (collab.models.reading_server)
        self.logits_all, self.reads = logits_all or reads, reads
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise ModelUnavailableError("the local LLM server has not been started")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def start(self) -> str:
        """Start the server (once) and wait until it answers; returns its base URL."""
        with self._lock:
            if self.running:
                return self.base_url
            self.port = self.port or free_port()
            self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (lives as long as the server)
                prefix="collab-llm-server-", suffix=".log"
            )
            cmd = [
                # llama-cpp-python's server; reading prompts if asked
                sys.executable, "-c",
                f"from collab.models.reading_server import main; main(reading={self.reads})",
                "--model", str(self.model_path),
                "--model_alias", self.alias,
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--n_ctx", str(self.n_ctx),
                "--n_threads", str(self.n_threads),
                "--n_threads_batch", str(self.n_threads),
                "--logits_all", "true" if self.logits_all else "false",
                # by default a new request cuts off the one in flight; queue them instead
                "--interrupt_requests", "false",
                *self.extra_args,
            ]  # fmt: skip
            # The death signal fires when the *thread* that forked exits, so the
            # server is forked from one thread that lives as long as the process.
            self.process = _SPAWNER.submit(
                subprocess.Popen,
                cmd,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            ).result()
            atexit.register(self.stop)
            self._wait_ready()
            return self.base_url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://127.0.0.1:{self.port}/v1/models"
        while time.monotonic() < deadline and self.process is not None:
            if self.process.poll() is not None:
                raise ModelUnavailableError(
                    f"the local LLM server for {self.model_path} exited with "
                    f"{self.process.returncode}:\n{self.log_tail()}",
                    hint="check that the GGUF file loads (collab models list) and that "
                    "llama-cpp-python[server] is installed",
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise ModelUnavailableError(
            f"the local LLM server did not answer within {self.startup_timeout_s:g}s",
            hint="a large model on a slow disk may need a longer startup_timeout_s",
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalServerChatModel(OpenAICompatibleChatModel):
    """The OpenAI-compatible chat model, pointed at a ``LocalLLMServer`` it starts on first use."""

    base_url: str = "http://127.0.0.1:0/v1"
    location: Location | None = "remote"  # it stands in for a remote LLM
    _server: LocalLLMServer | None = PrivateAttr(None)

    def __init__(self, *, server: LocalLLMServer, **kwargs: Any) -> None:
        super().__init__(model=server.alias, **kwargs)
        self._server = server

    @property
    def server(self) -> LocalLLMServer:
        if self._server is None:
            raise ModelUnavailableError("this model has no local server to start")
        return self._server

    def server_capabilities(self) -> ServerCapabilities:
        """Known without starting the server: llama-cpp-python's, reading or not."""
        if self.capabilities is None:
            kind: ServerKind = "collab" if self.server.reads else "llama-cpp-python"
            self.capabilities = capabilities_for(kind)
        return self.capabilities

    def _client_kwargs(self) -> dict[str, Any]:
        self.base_url = self.server.start()
        return super()._client_kwargs()

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.base_url = self.server.start()
        return super()._post(path, payload)
