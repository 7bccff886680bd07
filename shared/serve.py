"""Running a service: JSON logs, the garbage collector and the HTTP server, the same way for
every service."""

from __future__ import annotations

import gc

import uvicorn
from fastapi import FastAPI

from shared.observability import configure_json_logging

# Uvicorn waits this long for requests in flight on SIGTERM; the lifespan then flushes and closes.
GRACEFUL_SHUTDOWN_SECONDS = 7
# CPython's default thresholds (700, 10, 10) make a consumer that holds a batch of thousands of
# decoded records run a full collection every few batches, each scanning every object alive:
# 2.4 s of a 50,000-response analytics run went to it. Collections of the youngest objects
# every 50,000 allocations instead of 700 took 0.3 s in the same run (docs/performance.md).
GC_THRESHOLDS = (50_000, 20, 10)


def tune_garbage_collector() -> None:
    """Collect less often, and leave out of every later collection the objects made so far
    (modules, settings, templates, the taxonomy), which live as long as the process."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(app: FastAPI, *, host: str, port: int, log_level: str) -> None:
    """Serve `app` until SIGTERM or SIGINT, logging JSON lines named after the service."""
    service = str(getattr(app.state, "service", app.title))
    configure_json_logging(service, log_level)
    tune_garbage_collector()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=None,  # keep our JSON handler for uvicorn's loggers too
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
