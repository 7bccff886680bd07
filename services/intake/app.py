"""The intake's composition root: builds the clients, the use cases and the HTTP app."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from fastapi import FastAPI
from pymongo import AsyncMongoClient

from services.intake.acceptance import Intake
from services.intake.api import router
from services.intake.claims import ClaimStore
from services.intake.publisher import BrokerUnavailable, EventPublisher
from services.intake.settings import IntakeSettings
from services.intake.sources import platforms
from services.intake.sources.credentials import redact
from services.intake.surveys import SurveyCatalog
from shared import mongo
from shared.http import health_router, install_problem_handlers
from shared.kafka import check_access, kafka_security, new_broker
from shared.observability import instrument

RESPONSE_CLAIMS = "intake_response_claims"
PILOT_CLAIMS = "intake_pilot_claims"
SETTLE_ON_CLOSE_SECONDS = 2.0  # within the operators' 10 s from SIGTERM to exit


class RedactSecrets(logging.Filter):
    """Access-log lines without the secret of a `?token=` webhook URL (Jotform, the bridge)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the request path of an access-log record; never drops a line."""
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def redact_access_log() -> None:
    """Install `RedactSecrets` once on Uvicorn's access logger."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactSecrets) for existing in access.filters):
        access.addFilter(RedactSecrets())


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
    )
    return Wiring(intake, publisher, client)


def create_app(settings: IntakeSettings) -> FastAPI:
    """The intake app; clients are created here and connected in the lifespan, not at import."""
    redact_access_log()
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
    app.state.intake = wiring.intake
    app.state.catalog = SurveyCatalog.load(settings.surveys_dir)
    app.state.platforms = platforms()
    install_problem_handlers(app)
    instrument(app, "intake")
    app.include_router(router)
    app.include_router(
        health_router({"kafka": publisher.ping, "mongodb": lambda: mongo.ping(client)})
    )
    return app
