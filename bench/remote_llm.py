"""A stand-in for a hosted LLM's capacity: an OpenAI-compatible server that answers any
number of requests at once, each after a fixed delay, streaming a fixed reply.

A model on this machine's two cores answers one request at a time, so it cannot
show whether collab itself serializes requests that go to a remote LLM; a
hosted API answers many at once. This server has the API's shape (models,
streaming with usage, plain answers) and its concurrency, and nothing else:
``bench/server.py`` uses it to measure collab's own overhead under load.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

REPLY = "The answer is forty-two, as computed by the remote model in a single pass."


def remote_llm_app(latency_s: float, token_s: float = 0.005, name: str = "remote-llm") -> FastAPI:
    """The app: first token after ``latency_s``, then one word every ``token_s``."""
    app = FastAPI()
    words = REPLY.split(" ")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "bench"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Any:
        body = await request.json()
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 for m in body["messages"])
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                 "total_tokens": prompt_tokens + len(words)}  # fmt: skip
        base = {"id": "chatcmpl-bench", "created": int(time.time()), "model": name}
        await asyncio.sleep(latency_s)
        if not body.get("stream"):
            message = {"role": "assistant", "content": REPLY}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

        async def events() -> Any:
            chunk = {**base, "object": "chat.completion.chunk"}
            for i, word in enumerate(words):
                delta = {"content": word if i == 0 else f" {word}"}
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                yield f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n"
                await asyncio.sleep(token_s)
            end = {"index": 0, "delta": {}, "finish_reason": "stop"}
            yield f"data: {json.dumps({**chunk, 'choices': [end]})}\n\n"
            yield f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
