"""The wait before the SLM's answer while the LLM is down, with and without the circuit breaker.

Two outages side by side in one run: a port where nothing listens, and a server
that accepts connections and never answers (1 s timeout, 3 retries). For each,
``CollabChatModel`` (policy: the LLM answers) gets the same requests with the
breaker on (collab's default) and off (every request pays the retry budget).

    python bench/faults.py [--requests 8]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time

from rich.console import Console
from rich.table import Table

from collab import CollabChatModel, Policy
from collab.models.breaker import breaker_for
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.local_server import free_port
from collab.models.openai import OpenAICompatibleChatModel

console = Console(width=120)


def hanging_server() -> str:
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            held.append(connection)  # kept open, never read

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


def waits(slm: LlamaCppChatModel, url: str, requests: int, breaker: bool) -> list[float]:
    """Seconds from each request to the first token of the SLM's answer."""
    llm = OpenAICompatibleChatModel(
        model="down", base_url=url, location="remote", timeout=1.0, max_retries=3,
        capabilities={"kind": "openai"},
    )  # fmt: skip
    breaker_for(url).threshold = 2 if breaker else 10**9
    pair = CollabChatModel(slm=slm, llm=llm, policy=Policy(default="llm_only"))
    out = []
    for _ in range(requests):
        start = time.perf_counter()
        for chunk in pair.stream("Say hello.", max_tokens=8):
            if chunk.content:
                out.append(time.perf_counter() - start)
                break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args()
    slm = LlamaCppChatModel(model="smollm2-135m", temperature=0.0, n_ctx=1024)
    slm.invoke("Hi", max_tokens=2)  # loaded and warm
    table = Table(title=f"seconds to the SLM's first token, LLM down, {args.requests} requests")
    for column in ("outage", "breaker", "first 2 (p50)", "after (p50)", "all (max)"):
        table.add_column(column, justify="left" if column in ("outage", "breaker") else "right")
    for outage in ("port refused", "server hangs"):
        for breaker in (False, True):
            url = f"http://127.0.0.1:{free_port()}/v1" if outage == "port refused" else (
                hanging_server()
            )  # fmt: skip
            seconds = waits(slm, url, args.requests, breaker)
            table.add_row(
                outage, "on" if breaker else "off",
                f"{statistics.median(seconds[:2]):.2f}", f"{statistics.median(seconds[2:]):.2f}",
                f"{max(seconds):.2f}",
            )  # fmt: skip
    console.print(table)
    console.print(
        "timeout 1 s, 3 retries. With the breaker on, two failed calls mark the endpoint "
        "down: later requests go straight to the SLM until a probe finds the LLM back "
        "(target: p50 under 0.5 s once open)."
    )


if __name__ == "__main__":
    main()
