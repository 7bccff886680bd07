"""HTTP pieces every service shares: problem+json errors (RFC 9457) and health endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
