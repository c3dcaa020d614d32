"""HTTP errors in OpenAI's shape: collab's errors by who must act, bad bodies, oversized bodies.

The caller's mistakes are 4xx, the model's unexpected output 502, an
unavailable model 503; every body is ``{"error": {"message", "type", "param",
"code"}}``.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collab.errors import CollabError
from collab.server.protocol import error_body


def status_of(exc: CollabError) -> tuple[int, str, str]:
    """(HTTP status, OpenAI error type, error code): whose move it is (see CollabError)."""
    return exc.status, exc.kind, exc.code


def collab_message(exc: CollabError) -> str:
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


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    problems = exc.errors() if isinstance(exc, RequestValidationError) else []
    first = problems[0] if problems else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    text = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
        for e in problems[:5]
    )
    return JSONResponse(error_body(text or str(exc), param=where or None), status_code=400)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, HTTPException):
        raise exc
    kind = {401: "authentication_error", 404: "not_found_error"}.get(
        exc.status_code, "invalid_request_error"
    )
    code = {401: "invalid_api_key", 413: "body_too_large"}.get(exc.status_code)
    return JSONResponse(
        error_body(str(exc.detail), kind, code=code),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _collab_error(_: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, CollabError):
        raise exc
    status, kind, code = status_of(exc)
    return JSONResponse(error_body(collab_message(exc), kind, code=code), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(CollabError, _collab_error)
