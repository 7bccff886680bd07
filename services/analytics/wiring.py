"""The analytics composition root: the clients, the store and the erasure use case, built from
settings in one place and used by the HTTP app, the maintenance commands and the benchmarks.

Nothing connects here: the MongoDB client connects on first use, and the app's lifespan starts
the Kafka broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

from pymongo import AsyncMongoClient

from services.analytics.erasure import AnalyticsErasure
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from shared import mongo

RETIRE_ON_CLOSE_SECONDS = 2.0  # within the operators' 10 s from SIGTERM to exit


@dataclass(frozen=True)
class Wiring:
    """Analytics' store and erasure use case and the client behind them, not yet connected."""

    client: AsyncMongoClient[mongo.Document]
    store: AnalyticsStore
    erasure: AnalyticsErasure
    # Free answers and focal-point keys of responses received longer ago are not kept.
    personal_for: timedelta

    async def ensure_indexes(self) -> None:
        """Create the indexes the service reads by; a no-op once they exist."""
        await self.erasure.ensure_indexes()
        await self.store.ensure_indexes()

    async def close(self) -> None:
        """Give the superseded aggregate versions being shrunk `RETIRE_ON_CLOSE_SECONDS` (a
        version left whole is passed over by readers), then close the MongoDB client."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.store.retired(), RETIRE_ON_CLOSE_SECONDS)
        await self.client.close()


def wire(settings: AnalyticsSettings) -> Wiring:
    """Build the client, the store (with the keys of focal-point addresses and the retention of
    personal fields) and the erasure use case."""
    client = mongo.new_client(settings.mongodb_url)
    db = mongo.database(client, settings.mongodb_database)
    personal_for = timedelta(days=settings.personal_data_retention_days)
    return Wiring(
        client,
        AnalyticsStore(db, settings.email_keys(), personal_for),
        AnalyticsErasure(db, settings.erasure_step_delay_seconds),
        personal_for,
    )
