"""Running a service: JSON logs and the HTTP server, the same way for every service."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from shared.observability import configure_json_logging

# Uvicorn waits this long for requests in flight on SIGTERM; the lifespan then flushes and closes.
GRACEFUL_SHUTDOWN_SECONDS = 7


def serve(app: FastAPI, *, host: str, port: int, log_level: str) -> None:
    """Serve `app` until SIGTERM or SIGINT, logging JSON lines named after the service."""
    service = str(getattr(app.state, "service", app.title))
    configure_json_logging(service, log_level)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=None,  # keep our JSON handler for uvicorn's loggers too
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
