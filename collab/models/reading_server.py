"""The stand-in LLM server's entry point: llama-cpp-python's server, plus reading at speed.

``main(reading=False)`` serves llama-cpp-python's server as it is.

``python -m collab.models.reading_server`` takes llama-cpp-python's server
arguments and serves its app with one addition: ``/v1/completions`` with
vLLM's ``prompt_logprobs`` (or a prompt of token ids) is answered from the
logits llama.cpp computed, keeping the top N per position with a partial sort.
llama-cpp-python's own ``echo`` path sorts the whole vocabulary in Python at
every echoed position (about a minute for 400 Qwen positions); verify-by-reading
reads the prompt and the draft every round, so the stand-in must not. Every
other request goes to llama-cpp-python unchanged.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import Request  # at module level: FastAPI reads the handler's annotations

from collab.models.engine import TOP_N, shared_prefix, top_logprobs

KIND = "collab"  # what /v1/models reports as owned_by: the server kind collab probes for


def _rows(llama: Any, tokens: list[int]) -> npt.NDArray[np.float32]:
    """Next-token logits after each of ``tokens`` (the KV cache keeps the shared prefix)."""
    keep = shared_prefix(llama.input_ids[: llama.n_tokens], tokens)
    if keep < len(tokens):
        llama.n_tokens = keep  # eval drops the KV cache from here on
        llama.eval(tokens[keep:])
    scores: npt.NDArray[np.float32] = llama.scores[: len(tokens)]
    return scores


def read(llama: Any, body: dict[str, Any]) -> dict[str, Any]:
    """A completions response in vLLM's dialect: ``prompt_logprobs`` for every prompt token
    after the first, and the top log-probabilities of the one token after the prompt."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        tokens = list(llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        tokens = [int(t) for t in prompt]
    else:
        raise ValueError("prompt must be text or a non-empty list of token ids")
    if not llama._logits_all:
        raise ValueError("the server was started without --logits_all true")
    if len(tokens) >= llama.n_ctx():
        raise ValueError(f"{len(tokens)} prompt tokens do not fit the context of {llama.n_ctx()}")
    n = max(1, min(TOP_N, int(body.get("prompt_logprobs") or body.get("logprobs") or 1)))
    chunk = 64  # rows at a time: a row is the whole vocabulary
    entries: list[dict[str, dict[str, float]] | None] = [None]
    logits = _rows(llama, tokens)
    last: dict[str, float] = {}
    for start in range(0, len(tokens), chunk):
        logp, ids = top_logprobs(np.asarray(logits[start : start + chunk], dtype=np.float32), n)
        for i in range(logp.shape[0]):
            position = start + i + 1  # the distribution of the token at this position
            row = {str(int(t)): {"logprob": float(logp[i, t])} for t in ids[i]}
            if position < len(tokens):
                row[str(tokens[position])] = {"logprob": float(logp[i, tokens[position]])}
                entries.append(row)
            else:
                last = {_text(llama, int(t)): float(logp[i, t]) for t in ids[i]}
    best = next(iter(last))
    ends = best == _text(llama, llama.token_eos())
    finish, written = ("stop", "") if ends else ("length", best)
    return {
        "id": f"cmpl-read-{time.time_ns()}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model") or "",
        "choices": [{
            "index": 0, "text": written, "finish_reason": finish, "prompt_logprobs": entries,
            "logprobs": {"tokens": [best], "token_logprobs": [last[best]],
                         "top_logprobs": [last], "text_offset": [0]},
        }],
        "usage": {"prompt_tokens": len(tokens), "completion_tokens": 1,
                  "total_tokens": len(tokens) + 1},
    }  # fmt: skip


def _text(llama: Any, token: int) -> str:
    """How a token is named in the top log-probabilities: its text, control tokens written
    out, so that /extras/tokenize reads it back as that token."""
    return bytes(llama.detokenize([token], special=True)).decode("utf-8", "replace")


def wants_reading(body: dict[str, Any]) -> bool:
    """Whether a completions request is one this module answers: prompt log-probabilities,
    or a prompt of token ids (which llama-cpp-python's server does not take)."""
    prompt = body.get("prompt")
    ids = isinstance(prompt, list) and bool(prompt) and all(isinstance(t, int) for t in prompt)
    return body.get("prompt_logprobs") is not None or ids


def add_reading(app: Any) -> None:
    """Put the reading routes in front of llama-cpp-python's own."""
    from fastapi.responses import JSONResponse
    from llama_cpp.server import app as server
    from llama_cpp.server.types import CreateCompletionRequest
    from pydantic import ValidationError
    from starlette.concurrency import run_in_threadpool

    def invalid(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": message, "type": "invalid_request_error"}}, status_code=status
        )

    async def completions(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError as exc:
            return invalid(f"the body is not JSON: {exc}")
        if not isinstance(body, dict):
            return invalid("the body must be a JSON object")
        if not wants_reading(body):
            try:
                parsed = CreateCompletionRequest(**body)
            except ValidationError as exc:
                return invalid(str(exc), 422)
            return await server.create_completion(request, parsed)
        async with contextlib.asynccontextmanager(server.get_llama_proxy)() as proxy:
            llama = proxy(body.get("model"))
            try:
                return await run_in_threadpool(read, llama, body)
            except ValueError as exc:
                return invalid(str(exc))

    async def models() -> dict[str, Any]:
        async with contextlib.asynccontextmanager(server.get_llama_proxy)() as proxy:
            aliases = list(proxy._model_settings_dict)
        return {
            "object": "list",
            "data": [{"id": a, "object": "model", "owned_by": KIND, "permissions": []}
                     for a in aliases],
        }  # fmt: skip

    before = list(app.router.routes)
    app.add_api_route("/v1/completions", completions, methods=["POST"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    added = app.router.routes[len(before) :]
    app.router.routes[:] = [*added, *before]


def main(reading: bool = True) -> None:
    """llama-cpp-python's server; with ``reading``, it also reads."""
    import llama_cpp.server.__main__ as entry
    from llama_cpp.server.app import create_app

    def create_reading_app(**kwargs: Any) -> Any:
        app = create_app(**kwargs)
        if reading:
            add_reading(app)
        return app

    entry.create_app = create_reading_app  # type: ignore[attr-defined,assignment]
    entry.main()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
