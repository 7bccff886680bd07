"""Observability every service shares: JSON logs and Prometheus metrics on `/metrics`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.redaction import REDACT

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"]
)
DLQ_MESSAGES = Counter("dlq_messages_total", "Poison messages parked on a DLQ", ["topic"])
EMAILS = Counter("emails_total", "Pilot emails by outcome", ["status"])
SMTP_FAILURES = Counter("notifier_smtp_failures_total", "Failed SMTP sends by kind", ["kind"])
SMTP_PAUSED = Gauge("notifier_smtp_paused", "1 while sending waits for the SMTP server to recover")
CONSUMER_LAG = Gauge("consumer_lag", "Records not yet committed by a group", ["group", "topic"])
STORED_PROBES = Counter(
    "analytics_stored_response_probes_total",
    "Positions a batch read again after a crash during its raw insert asked about by a probe "
    "(an insert that collides on the stored responses' unique origin index: no read)",
)
STORED_READS = Counter(
    "analytics_stored_response_reads_total",
    "Reads of stored responses by id (each a scan of the collection on FerretDB), by why: "
    "settle (a batch read again found responses stored that no receipt or probe placed), probe "
    "(the delete of probes that found nothing stored from their position), chains (a batch "
    "held revisions, duplicates, reviews or retractions)",
    ["reason"],
)

# Log record attributes that identify the thing a line is about; they become JSON fields.
CONTEXT_FIELDS = ("response_id", "pilot_id", "survey_id", "topic", "partition", "offset")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the context fields given."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # formatted (and redacted) by `shared.redaction.RedactSecrets`
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_json_logging(service: str, level: str) -> None:
    """Send every log line of the process to stderr as JSON, redacted (`shared.redaction`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(REDACT)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def instrument(app: FastAPI, service: str) -> None:
    """Count and time every request by route template, and serve `/metrics`."""
    app.state.service = service
    app.add_middleware(_Measured, service=service, routes=app)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class _Measured:
    """Times each HTTP request and counts it by route template and status. A plain ASGI
    middleware: Starlette's `BaseHTTPMiddleware` (`@app.middleware`) runs each request in a task
    of its own and streams its answer through a queue, which cost more than some endpoints."""

    def __init__(self, app: ASGIApp, service: str, routes: FastAPI) -> None:
        self.app = app
        self.service = service
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def answered(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, answered)
        route = _route_template(self.routes, scope)
        method = scope["method"]
        HTTP_LATENCY.labels(self.service, method, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()


def _route_template(app: FastAPI, scope: Scope) -> str:
    # The template (`/v1/surveys/{survey_id}/summary`), not the path: label values stay few.
    # The router leaves the route it chose in the scope; routes of included routers are found
    # only there (FastAPI keeps them behind one wrapper without a `path`).
    chosen = getattr(scope.get("route"), "path", None)
    if isinstance(chosen, str):
        return chosen
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"


async def track_lag(
    measure: Callable[[], Awaitable[int]], group: str, topic: str, interval: float = 15.0
) -> None:
    """Refresh the `consumer_lag` gauge every `interval` seconds until cancelled."""
    while True:
        try:
            CONSUMER_LAG.labels(group, topic).set(await measure())
        except Exception:  # lag is advisory: a failed measurement must not stop the service
            logging.getLogger(__name__).debug("consumer lag not measured", exc_info=True)
        await asyncio.sleep(interval)
