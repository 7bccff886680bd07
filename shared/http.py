"""HTTP pieces every service shares: problem+json errors (RFC 9457), health endpoints, a cap on
request bodies, and operator routes that check the bearer token before reading the body."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_JSON = "application/problem+json"

ReadinessCheck = Callable[[], Awaitable[None]]


class Problem(Exception):
    """An error the client can act on, answered as `application/problem+json`."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Render a problem document."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(errors: Any) -> list[dict[str, str]]:
    """Pydantic errors as `[{"field": "respondent.country", "message": ...}]`, one per field."""
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "(body)",
            "message": error["msg"],
        }
        for error in errors
    ]


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error of `app` a problem document, never an HTML page or a bare string."""

    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc.status, exc.title, exc.detail, headers=exc.headers, **exc.extra)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, BodyTooLarge):
            return problem_response(
                413, "Body too large", f"the body must be at most {exc.limit} bytes"
            )
        return problem_response(exc.status_code, str(exc.detail), headers=exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {**error, "loc": [part for part in error["loc"] if part not in ("body", "query")]}
            for error in exc.errors()
        ]
        return problem_response(
            422,
            "Invalid request",
            "See `errors` for each failing field.",
            errors=field_errors(errors),
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)


def health_router(checks: Mapping[str, ReadinessCheck]) -> APIRouter:
    """`/healthz` (the process answers) and `/readyz` (each dependency in `checks` answers)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        failures: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await check()
            except Exception as exc:  # any failure means not ready; the reason is reported
                failures[name] = f"{type(exc).__name__}: {exc}"[:300]
        if failures:
            return problem_response(503, "Not ready", failures=failures)
        return JSONResponse({"status": "ready", "checks": sorted(checks)})

    return router


class BodyTooLarge(StarletteHTTPException):
    """A request body over the service's limit (answered 413 by `install_problem_handlers`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "Body too large")
        self.limit = limit


class BodyLimit:
    """Caps every request body: more than `max_bytes`, declared or sent, is never read.

    The check happens when the app reads the body, not when the request arrives, so an
    endpoint that refuses a request first (a missing operator token: 401) answers that without
    reading a byte of it. A body declared larger fails at the first read, before any is taken.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a `receive` that refuses bytes past the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        taken = 0

        async def limited() -> Message:
            nonlocal taken
            if declared is not None and declared > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                taken += len(message.get("body", b""))
                if taken > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def limit_bodies(app: FastAPI, max_bytes: int) -> None:
    """Refuse request bodies over `max_bytes` on every endpoint of `app` (413 problem+json)."""
    app.add_middleware(BodyLimit, max_bytes=max_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def check_operator(request: Request) -> None:
    """401 unless the request bears the operator token the app was configured with
    (`app.state.operator_token`); reads headers only."""
    expected: SecretStr = request.app.state.operator_token
    scheme, _, presented = request.headers.get("authorization", "").strip().partition(" ")
    valid = hmac.compare_digest(presented.strip().encode(), expected.get_secret_value().encode())
    if scheme.lower() != "bearer" or not presented.strip() or not valid:
        raise Problem(401, "Unauthorized", "a valid operator bearer token is required")


class OperatorRoute(APIRoute):
    """A route for operators: the bearer token is checked before the body is read or parsed
    (FastAPI reads a body before it resolves dependencies, so a dependency would be too late)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler behind the operator check."""
        handler = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            check_operator(request)
            return await handler(request)

        return authenticated
