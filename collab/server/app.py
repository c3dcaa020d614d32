"""The OpenAI-compatible HTTP server: ``create_app(workflows)`` returns a FastAPI app.

Routes: ``POST /v1/chat/completions`` (plain and SSE streaming, tools in and
out, ``usage``, and a ``collab`` object with the trace), ``GET /v1/models``,
``GET /health`` and the web chat at ``/``. Errors have OpenAI's shape
(``collab.server.errors``) and 4xx codes for anything the client can fix.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage

from collab.errors import CollabError
from collab.server.errors import BodyLimit, collab_message, install_error_handlers, status_of
from collab.server.protocol import (
    ChatRequest,
    Limits,
    attribution,
    chunk,
    completion,
    completion_id,
    delta_of,
    error_body,
    finish_reason,
    usage,
)
from collab.server.workflows import Workflow
from collab.strategies.base import gather
from collab.trace import Trace

log = logging.getLogger("collab.server")
_BEARER = HTTPBearer(auto_error=False, description="the server's API key, when it has one")
T = TypeVar("T")


@dataclass
class ServerState:
    """What the routes share: the workflows, the key, the limits, and the outcome counts."""

    workflows: dict[str, Workflow]
    api_key: str | None
    limits: Limits
    counts: Counter[str] = field(default_factory=Counter)


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.collab
    return state


class ClientGoneError(Exception):
    """The client disconnected before its answer was ready."""


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result; cancelled (so generation stops) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task
            raise ClientGoneError


async def _answer(
    workflow: Workflow, messages: Sequence[BaseMessage], params: dict[str, Any]
) -> AsyncGenerator[AIMessageChunk, None]:
    """The workflow's chunks. Chat models take the SLM's turn themselves, only while it
    runs; the agent graph's nodes call it from threads, so an agent request holds it
    throughout."""
    if workflow.queue is None or not workflow.agent:
        async for piece in workflow.astream(messages, params):
            yield piece
        return
    async with workflow.queue.slot():
        async for piece in workflow.astream(messages, params):
            yield piece


async def _collect(pieces: AsyncIterator[AIMessageChunk]) -> AIMessage:
    return gather(iter([piece async for piece in pieces]))


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def _authorized(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> None:
    api_key = _state(request).api_key
    if api_key is None:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise HTTPException(401, "missing or wrong API key (Authorization: Bearer <key>)")


router = APIRouter()
v1 = APIRouter(prefix="/v1", dependencies=[Depends(_authorized)])


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    state = _state(request)
    queues = {id(w.queue): w.queue for w in state.workflows.values() if w.queue is not None}
    return {
        "status": "ok",
        "models": list(state.workflows),
        "waiting": sum(q.waiting for q in queues.values()),
        "requests": {k: state.counts[k] for k in ("completed", "cancelled", "failed")},
    }


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def web_chat() -> str:
    return (resources.files("collab.server") / "chat.html").read_text(encoding="utf-8")


@v1.get("/models")
async def models(request: Request) -> dict[str, Any]:
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "collab",
         "description": w.description}
        for name, w in _state(request).workflows.items()
    ]  # fmt: skip
    return {"object": "list", "data": data}


def _refusal(state: ServerState, body: ChatRequest) -> tuple[Workflow, str | None, str | None]:
    """The workflow ``body`` asks for, or why it is refused (message, param)."""
    workflow = state.workflows.get(body.model)
    if workflow is None:
        raise HTTPException(
            404, f"no model {body.model!r}; this server has {', '.join(state.workflows)}"
        )
    refusal = body.refusal(state.limits)
    if refusal:
        return workflow, refusal, None
    if workflow.agent and body.tools:
        why = (
            f"{workflow.name} runs its own tools; send tools to collab-auto or "
            "collab-slm to have the calls returned to you"
        )
        return workflow, why, "tools"
    return workflow, None, None


@v1.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request) -> Response | dict[str, Any]:
    state = _state(request)
    workflow, refusal, param = _refusal(state, body)
    if refusal:
        code = "limit_exceeded" if param is None else None
        return JSONResponse(error_body(refusal, param=param, code=code), status_code=400)
    try:
        messages = body.messages_in()
    except ValueError as exc:
        return JSONResponse(error_body(f"messages: {exc}", param="messages"), status_code=400)
    if workflow.queue is not None:
        workflow.queue.check()
    cid = completion_id()
    pieces = _answer(workflow, messages, body.params(state.limits))
    try:
        if not body.stream:
            message = await until_disconnected(request, _collect(pieces))
            state.counts["completed"] += 1
            trace = Trace.from_metadata(message.response_metadata)
            return completion(cid, body.model, message, attribution(trace, workflow.llm_price))
        # Wait for the first piece before answering 200, so that errors that
        # happen up front (queue, context length, policy) get their status.
        first = await until_disconnected(request, anext(pieces, None))
    except ClientGoneError:
        state.counts["cancelled"] += 1
        await pieces.aclose()
        return Response(status_code=499)
    except BaseException:
        state.counts["failed"] += 1
        await pieces.aclose()
        raise
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    events = _events(cid, body.model, workflow, first, pieces, include_usage, state.counts)
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def create_app(
    workflows: dict[str, Workflow],
    *,
    api_key: str | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    """The server over ``workflows`` (see ``collab.server.workflows``).

    With ``api_key``, ``/v1/*`` needs ``Authorization: Bearer <api_key>``.
    """
    limits = limits or Limits()
    app = FastAPI(
        title="collab",
        summary="An OpenAI-compatible endpoint over a local SLM and a remote LLM",
    )
    app.state.collab = ServerState(workflows, api_key, limits)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(v1)
    return app


async def _events(
    cid: str,
    model: str,
    workflow: Workflow,
    first: AIMessageChunk | None,
    pieces: AsyncGenerator[AIMessageChunk, None],
    include_usage: bool,
    counts: Counter[str],
) -> AsyncIterator[str]:
    """The SSE stream; a client that disconnects cancels it, and with it the generation."""
    full = first
    outcome = "cancelled"  # unless the stream gets to its end
    try:
        yield _sse(chunk(cid, model, {"role": "assistant", "content": ""}))
        if first is not None:
            delta = delta_of(first)
            if delta:
                yield _sse(chunk(cid, model, delta))
        async for piece in pieces:
            full = piece if full is None else full + piece
            delta = delta_of(piece)
            if delta:
                yield _sse(chunk(cid, model, delta))
    except CollabError as exc:
        outcome = "failed"
        _, kind, code = status_of(exc)
        yield _sse(error_body(collab_message(exc), kind, code=code))
        return
    except Exception:
        outcome = "failed"
        log.exception("stream failed")
        yield _sse(error_body("the answer failed part way; see the server log", "server_error"))
        return
    else:
        outcome = "completed"
    finally:
        counts[outcome] += 1
        await pieces.aclose()
    message = gather(iter([] if full is None else [full]))
    trace = Trace.from_metadata(message.response_metadata)
    collab = attribution(trace, workflow.llm_price)
    yield _sse(chunk(cid, model, {}, finish_reason=finish_reason(message), collab=collab))
    if include_usage:
        yield _sse({**chunk(cid, model, {}), "choices": [], "usage": usage(message)})
    yield _sse("[DONE]")
