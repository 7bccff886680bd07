"""The notifier's HTTP app: routes, subscribers and the dispatcher, over `wiring.wire`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from services.notifier import confirm, preferences
from services.notifier.api import operators, router
from services.notifier.consumer import subscribe
from services.notifier.provider_reports import install as install_provider_reports
from services.notifier.settings import NotifierSettings
from services.notifier.wiring import wire
from shared import mongo
from shared.erasures import subscribe_erasures
from shared.http import health_router, install_problem_handlers, limit_bodies
from shared.kafka import (
    ensure_topics,
    new_broker,
    readiness_check,
    start_lag_tracking,
    topics_with_dlq,
)
from shared.kafka_security import kafka_security
from shared.observability import instrument
from shared.redaction import install_redaction
from shared.retention import sweep_periodically

# SIGTERM must stop the service within 10 s. Uvicorn gives requests in flight up to 7 s
# (`shared.serve`) before this shutdown starts, which leaves the rest for the consumers to commit
# and leave and for the dispatcher to finish the one message it is sending; a healthy server takes
# milliseconds for that. A hung one is cut off: the delivery stays `sending` and its lease
# recovers it (a second copy only if the server had taken the message: the one window, see
# `deliveries`).
DISPATCHER_GRACE_SECONDS = 2.0
QUIT_GRACE_SECONDS = 0.5


def expiry_interval(settings: NotifierSettings) -> float:
    """How often unconfirmed addresses are checked for expiry: a tenth of the time they have,
    between 1 s and 10 minutes (a scan of the focal points on FerretDB)."""
    return min(600.0, max(1.0, settings.confirmation_ttl_seconds / 10))


def create_app(settings: NotifierSettings) -> FastAPI:
    """The notifier app; subscribers and the dispatcher (unless `dispatcher_enabled` is off)
    run inside its lifespan."""
    install_redaction(settings)
    wiring = wire(settings)
    notifier, dispatcher = wiring.cases.notifier, wiring.cases.dispatcher
    security = kafka_security(settings)
    broker = new_broker(settings.kafka_bootstrap_servers, client_id="notifier", security=security)
    subscribe(broker, settings, notifier)
    erasures_group = f"{settings.notifier_group_id}.erasures"
    subscribe_erasures(broker, settings.topic_erasures, erasures_group, wiring.erasure.erase)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await wiring.ensure_indexes()
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            topics_with_dlq(
                settings.topic_responses, settings.topic_pilots, settings.topic_erasures
            ),
            security=security,
        )
        await broker.start()
        sending = (
            asyncio.create_task(dispatcher.run(), name="dispatcher")
            if settings.dispatcher_enabled
            else None
        )
        retention = asyncio.create_task(
            sweep_periodically(
                "notifier",
                wiring.erasure.sweep,
                timedelta(days=settings.personal_data_retention_days),
                settings.retention_sweep_seconds,
            ),
            name="retention",
        )
        expiry = asyncio.create_task(
            notifier.run_expiry(expiry_interval(settings)), name="confirmation expiry"
        )
        lag = start_lag_tracking(
            settings.kafka_bootstrap_servers,
            [
                (f"{settings.notifier_group_id}.registry", settings.topic_responses),
                (f"{settings.notifier_group_id}.pilots", settings.topic_pilots),
                (erasures_group, settings.topic_erasures),
            ],
            security=security,
        )
        try:
            yield
        finally:
            for task in [*lag, retention, expiry]:
                task.cancel()
            # The dispatcher finishes the message it is sending while the consumers commit and
            # leave their groups, each within its own bound.
            stopping = [broker.stop()]
            if sending is not None:
                stopping.append(dispatcher.stop_within(sending, DISPATCHER_GRACE_SECONDS))
            await asyncio.gather(*stopping)
            await wiring.close(grace=QUIT_GRACE_SECONDS)

    app = FastAPI(
        title="Cities survey notifier",
        version="1",
        description="Pilot emails to matching focal points; one-click unsubscribe.",
        lifespan=lifespan,
    )
    app.state.notifier = notifier
    app.state.people = wiring.cases.people
    app.state.wiring = wiring
    app.state.operator_token = settings.operator_token
    install_problem_handlers(app)
    limit_bodies(app, settings.max_body_bytes)
    instrument(app, "notifier")
    app.include_router(router)
    app.include_router(operators)
    install_provider_reports(app)
    app.include_router(confirm.router)
    app.include_router(preferences.router)
    app.include_router(
        health_router(
            {"kafka": readiness_check(broker), "mongodb": lambda: mongo.ping(wiring.client)}
        )
    )
    return app
