"""The analytics HTTP app on top of `wiring.wire`: the Kafka subscribers, the retention sweep
and the API and dashboard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from services.analytics.api import router
from services.analytics.consumer import reviews_group_id, subscribe
from services.analytics.settings import AnalyticsSettings
from services.analytics.snapshots import Snapshots
from services.analytics.views import running_views
from services.analytics.wiring import wire
from shared import mongo
from shared.auth import BearerAuth
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

DASHBOARD = Path(__file__).with_name("dashboard")


def create_app(settings: AnalyticsSettings) -> FastAPI:
    """The analytics app; the consumer runs inside the app's lifespan."""
    install_redaction(settings)
    wiring = wire(settings)
    client, store, erasure = wiring.client, wiring.store, wiring.erasure
    security = kafka_security(settings)
    broker = new_broker(settings.kafka_bootstrap_servers, client_id="analytics", security=security)
    subscribe(broker, settings, store)
    erasures_group = f"{settings.analytics_group_id}.erasures"
    subscribe_erasures(broker, settings.topic_erasures, erasures_group, erasure.erase)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            topics_with_dlq(
                settings.topic_responses, settings.topic_reviews, settings.topic_erasures
            ),
            security=security,
        )
        await wiring.ensure_indexes()
        await broker.start()
        retention = asyncio.create_task(
            sweep_periodically(
                "analytics",
                erasure.sweep,
                wiring.personal_for,
                settings.retention_sweep_seconds,
            ),
            name="retention",
        )
        lag = start_lag_tracking(
            settings.kafka_bootstrap_servers,
            [
                (settings.analytics_group_id, settings.topic_responses),
                (erasures_group, settings.topic_erasures),
                (reviews_group_id(settings), settings.topic_reviews),
            ],
            security=security,
        )
        try:
            yield
        finally:
            for task in [*lag, retention]:
                task.cancel()
            snapshots.close()
            await broker.stop()
            await wiring.close()

    app = FastAPI(
        title="Cities survey analytics",
        version="1",
        description="Exact running aggregates of the survey responses. No personal data.",
        lifespan=lifespan,
    )
    app.state.store = store
    snapshots = Snapshots(store, settings.min_cell_size, running_views)
    app.state.snapshots = snapshots
    app.state.bearer_auth = BearerAuth(settings.operator_token, settings.jwt_policy())
    install_problem_handlers(app)
    limit_bodies(app, settings.max_body_bytes)
    instrument(app, "analytics")
    app.include_router(router)
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD / "index.html")

    app.include_router(
        health_router({"kafka": readiness_check(broker), "mongodb": lambda: mongo.ping(client)})
    )
    return app
