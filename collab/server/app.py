"""The OpenAI-compatible HTTP server: ``create_app(workflows)`` returns a FastAPI app.

Routes: ``POST /v1/chat/completions`` (plain and SSE streaming, tools in and
out, ``usage``, and a ``collab`` object with the trace), ``GET /v1/models``,
``GET /health`` and the web chat at ``/``. Errors have OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``) and 4xx codes for
anything the client can fix.
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
from importlib import resources
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collab.errors import (
    CapabilityError,
    CollabError,
    ConfigurationError,
    ContextLengthError,
    ModelOutputError,
    ModelUnavailableError,
    PolicyError,
)
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
from collab.server.workflows import QueueFullError, Workflow
from collab.strategies.base import gather
from collab.trace import Trace

log = logging.getLogger("collab.server")
_BEARER = HTTPBearer(auto_error=False, description="the server's API key, when it has one")
T = TypeVar("T")

# (HTTP status, error type, error code) per collab error, most specific first.
_ERRORS: list[tuple[type[CollabError], int, str, str]] = [
    (QueueFullError, 429, "rate_limit_error", "queue_full"),
    (ContextLengthError, 400, "invalid_request_error", "context_length_exceeded"),
    (PolicyError, 400, "invalid_request_error", "policy_refused"),
    (CapabilityError, 400, "invalid_request_error", "unsupported"),
    (ConfigurationError, 400, "invalid_request_error", "invalid_value"),
    (ModelUnavailableError, 503, "server_error", "llm_unavailable"),
    (ModelOutputError, 502, "server_error", "model_output"),
]


def _status_of(exc: CollabError) -> tuple[int, str, str]:
    for kind, status, error_type, code in _ERRORS:
        if isinstance(exc, kind):
            return status, error_type, code
    return 500, "server_error", "internal"


def _collab_message(exc: CollabError) -> str:
    return f"{exc.message} ({exc.hint})" if exc.hint else exc.message


class PayloadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413, declared or not, before they are parsed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = error_body(f"request body over {self.max_bytes} bytes", code="body_too_large")
            await JSONResponse(body, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)


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
    """The workflow's chunks, run in its local model's queue when it has one."""
    if workflow.gate is None:
        async for piece in workflow.astream(messages, params):
            yield piece
        return
    async with workflow.gate.slot():
        async for piece in workflow.astream(messages, params):
            yield piece


async def _collect(pieces: AsyncIterator[AIMessageChunk]) -> AIMessage:
    return gather(iter([piece async for piece in pieces]))


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


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
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    counts = Counter[str]()  # answers completed, cancelled by their client, failed

    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> None:
        if api_key is None:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (Authorization: Bearer <key>)")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        text = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in problems[:5]
        )
        return JSONResponse(error_body(text, param=where or None), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(
            exc.status_code, "invalid_request_error"
        )
        code = {401: "invalid_api_key", 413: "body_too_large"}.get(exc.status_code)
        return JSONResponse(
            error_body(str(exc.detail), kind, code=code),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(CollabError)
    async def collab_error(_: Request, exc: CollabError) -> JSONResponse:
        status, kind, code = _status_of(exc)
        return JSONResponse(error_body(_collab_message(exc), kind, code=code), status_code=status)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        gates = {id(w.gate): w.gate for w in workflows.values() if w.gate is not None}
        return {
            "status": "ok",
            "models": list(workflows),
            "waiting": sum(g.waiting for g in gates.values()),
            "requests": {k: counts[k] for k in ("completed", "cancelled", "failed")},
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def web_chat() -> str:
        return (resources.files("collab.server") / "chat.html").read_text(encoding="utf-8")

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models() -> dict[str, Any]:
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "collab",
                    "description": w.description,
                }
                for name, w in workflows.items()
            ],
        }

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)], response_model=None)
    async def chat_completions(body: ChatRequest, request: Request) -> Response | dict[str, Any]:
        workflow = workflows.get(body.model)
        if workflow is None:
            raise HTTPException(
                404, f"no model {body.model!r}; this server has {', '.join(workflows)}"
            )
        refusal = body.refusal(limits)
        if refusal:
            return JSONResponse(error_body(refusal, code="limit_exceeded"), status_code=400)
        if workflow.agent and body.tools:
            return JSONResponse(
                error_body(
                    f"{workflow.name} runs its own tools; send tools to collab-auto or "
                    "collab-slm to have the calls returned to you",
                    param="tools",
                ),
                status_code=400,
            )
        try:
            messages = body.messages_in()
        except ValueError as exc:
            return JSONResponse(error_body(f"messages: {exc}", param="messages"), status_code=400)
        if workflow.gate is not None:
            workflow.gate.check()
        params = body.params(limits)
        cid = completion_id()
        pieces = _answer(workflow, messages, params)
        try:
            if not body.stream:
                message = await until_disconnected(request, _collect(pieces))
                counts["completed"] += 1
                trace = Trace.from_metadata(message.response_metadata)
                return completion(cid, body.model, message, attribution(trace, workflow.llm_price))
            # Wait for the first piece before answering 200, so that errors that
            # happen up front (queue, context length, policy) get their status.
            first = await until_disconnected(request, anext(pieces, None))
        except ClientGoneError:
            counts["cancelled"] += 1
            await pieces.aclose()
            return Response(status_code=499)
        except BaseException:
            counts["failed"] += 1
            await pieces.aclose()
            raise
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _events(cid, body.model, workflow, first, pieces, include_usage, counts)
        return StreamingResponse(
            events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

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
        _, kind, code = _status_of(exc)
        yield _sse(error_body(_collab_message(exc), kind, code=code))
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
