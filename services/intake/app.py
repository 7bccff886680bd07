"""The intake's composition root: builds the clients, the use cases and the HTTP app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from fastapi import FastAPI
from pymongo import AsyncMongoClient

from services.intake.acceptance import Intake
from services.intake.api import operators, router
from services.intake.claims import ClaimStore
from services.intake.erasure import ERASURES, Erasures
from services.intake.erasure import router as erasure_router
from services.intake.publisher import BrokerUnavailable, EventPublisher
from services.intake.review_api import reviews
from services.intake.reviews import ReviewClock
from services.intake.settings import IntakeSettings
from services.intake.sources import platforms
from services.intake.surveys import SurveyCatalog
from shared import mongo
from shared.http import health_router, install_problem_handlers, limit_bodies
from shared.kafka import new_broker
from shared.kafka_security import check_access, kafka_security
from shared.observability import instrument
from shared.redaction import install_redaction

RESPONSE_CLAIMS = "intake_response_claims"
PILOT_CLAIMS = "intake_pilot_claims"
SETTLE_ON_CLOSE_SECONDS = 2.0  # within the operators' 10 s from SIGTERM to exit


@dataclass(frozen=True)
class Wiring:
    """The intake's use cases and the clients behind them, not yet connected."""

    intake: Intake
    publisher: EventPublisher
    client: AsyncMongoClient[mongo.Document]

    async def close(self) -> None:
        """Flush the producer, settle the claims of late acknowledgements, close both clients."""
        await self.publisher.stop()
        await self.intake.close(within=SETTLE_ON_CLOSE_SECONDS)
        await self.client.close()


def wire(settings: IntakeSettings) -> Wiring:
    """Build the clients and the use cases (shared by the HTTP app and `import`)."""
    client = mongo.new_client(settings.mongodb_url)
    db = mongo.database(client, settings.mongodb_database)
    publisher = EventPublisher(
        new_broker(
            settings.kafka_bootstrap_servers, client_id="intake", security=kafka_security(settings)
        ),
        settings.publish_timeout_seconds,
    )
    lease = timedelta(seconds=settings.claim_lease_seconds)
    intake = Intake(
        responses=ClaimStore(db[RESPONSE_CLAIMS], lease),
        pilots=ClaimStore(db[PILOT_CLAIMS], lease),
        publisher=publisher,
        responses_topic=settings.topic_responses,
        pilots_topic=settings.topic_pilots,
        reviews_topic=settings.topic_reviews,
    )
    return Wiring(intake, publisher, client)


def create_app(settings: IntakeSettings) -> FastAPI:
    """The intake app; clients are created here and connected in the lifespan, not at import."""
    install_redaction(settings)
    wiring = wire(settings)
    publisher, client = wiring.publisher, wiring.client

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Kafka may come later: until then requests get 503 and /readyz says why. Kafka refusing
        # the intake's credentials is no outage: the intake stops, naming the setting to fix.
        await check_access(
            settings.kafka_bootstrap_servers,
            kafka_security(settings),
            within=settings.publish_timeout_seconds,
        )
        with contextlib.suppress(BrokerUnavailable):
            await publisher.start()
        try:
            yield
        finally:
            await wiring.close()

    app = FastAPI(
        title="Cities survey intake",
        version="1",
        description="Survey webhooks in, validated `survey.responses.v1` events out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.operator_token = settings.operator_token
    app.state.intake = wiring.intake
    app.state.erasures = Erasures(
        publisher,
        mongo.database(client, settings.mongodb_database)[ERASURES],
        settings.topic_erasures,
        settings.email_keys(),
    )
    app.state.catalog = SurveyCatalog.load(settings.surveys_dir)
    app.state.platforms = platforms()
    app.state.review_clock = ReviewClock()
    install_problem_handlers(app)
    limit_bodies(app, settings.max_body_bytes)
    instrument(app, "intake")
    app.include_router(router)
    app.include_router(operators)
    app.include_router(erasure_router)
    app.include_router(reviews)
    app.include_router(
        health_router({"kafka": publisher.ping, "mongodb": lambda: mongo.ping(client)})
    )
    return app
