"""The intake's composition root: builds the clients, the use cases and the HTTP app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from services.intake.acceptance import Intake
from services.intake.api import router
from services.intake.claims import ClaimStore
from services.intake.publisher import BrokerUnavailable, EventPublisher
from services.intake.settings import IntakeSettings
from services.intake.sources import platforms
from services.intake.surveys import SurveyCatalog
from shared import mongo
from shared.http import health_router, install_problem_handlers
from shared.kafka import new_broker

RESPONSE_CLAIMS = "intake_response_claims"
PILOT_CLAIMS = "intake_pilot_claims"


def create_app(settings: IntakeSettings) -> FastAPI:
    """The intake app; clients are created here and connected in the lifespan, not at import."""
    client = mongo.new_client(settings.mongodb_url)
    db = mongo.database(client, settings.mongodb_database)
    publisher = EventPublisher(
        new_broker(settings.kafka_bootstrap_servers, client_id="intake"),
        settings.publish_timeout_seconds,
    )
    lease = timedelta(seconds=settings.claim_lease_seconds)
    intake = Intake(
        responses=ClaimStore(db[RESPONSE_CLAIMS], lease),
        pilots=ClaimStore(db[PILOT_CLAIMS], lease),
        publisher=publisher,
        responses_topic=settings.topic_responses,
        pilots_topic=settings.topic_pilots,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Kafka may come later: until then requests get 503 and /readyz says why.
        with contextlib.suppress(BrokerUnavailable):
            await publisher.start()
        try:
            yield
        finally:
            await publisher.stop()
            await client.close()

    app = FastAPI(
        title="Cities survey intake",
        version="1",
        description="Survey webhooks in, validated `survey.responses.v1` events out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.intake = intake
    app.state.catalog = SurveyCatalog.load(settings.surveys_dir)
    app.state.platforms = platforms()
    install_problem_handlers(app)
    app.include_router(router)
    app.include_router(
        health_router({"kafka": publisher.ping, "mongodb": lambda: mongo.ping(client)})
    )
    return app
