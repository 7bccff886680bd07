"""Running a service: logging and the HTTP server, the same way for every service."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

# Uvicorn waits this long for requests in flight on SIGTERM; the lifespan then flushes and closes.
GRACEFUL_SHUTDOWN_SECONDS = 7


def configure_logging(level: str) -> None:
    """One log format for every service."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


def serve(app: FastAPI, *, host: str, port: int, log_level: str) -> None:
    """Serve `app` until SIGTERM or SIGINT."""
    configure_logging(log_level)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
