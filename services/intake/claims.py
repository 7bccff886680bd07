"""Idempotency across restarts and replicas: a MongoDB record per accepted id (the only I/O here).

A delivery first *claims* its id, then publishes, then *confirms*. A second delivery of the same id
finds the confirmed record (a duplicate), or a fresh claim (another replica is publishing it now),
or a claim older than the lease (its replica died mid-publish), which it takes over.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from shared.mongo import Document

CONFIRM_ATTEMPTS = 5


class Claim(StrEnum):
    """What a claim attempt found."""

    CLAIMED = "claimed"  # ours to publish
    DUPLICATE = "duplicate"  # already published
    IN_FLIGHT = "in_flight"  # another replica is publishing it right now


class ClaimStore:
    """Claims on ids (response ids, pilot ids) in one collection."""

    def __init__(self, collection: AsyncCollection[Document], lease: timedelta) -> None:
        self._collection = collection
        self._lease = lease

    async def claim(self, key: str, now: datetime | None = None) -> Claim:
        """Try to take `key` for publishing."""
        now = now or datetime.now(UTC)
        # Read first: a redelivery then costs one read, not a failed write (which takes the
        # write lock on SQLite-backed servers).
        existing = await self._collection.find_one({"_id": key})
        if existing is None:
            try:
                await self._collection.insert_one(
                    {"_id": key, "state": "publishing", "claimed_at": now}
                )
                return Claim.CLAIMED
            except DuplicateKeyError:
                existing = await self._collection.find_one({"_id": key})
                if existing is None:  # released between our insert and our read
                    return await self.claim(key, now)
        if existing["state"] == "published":
            return Claim.DUPLICATE
        if existing["claimed_at"] > now - self._lease:
            return Claim.IN_FLIGHT
        taken = await self._collection.find_one_and_update(
            {"_id": key, "state": "publishing", "claimed_at": existing["claimed_at"]},
            {"$set": {"claimed_at": now}},
        )
        return Claim.CLAIMED if taken is not None else Claim.IN_FLIGHT

    async def confirm(self, key: str) -> None:
        """The broker acknowledged `key`: every later delivery of it is a duplicate."""
        # Retried: the event is already in Kafka, and an unconfirmed claim would let a retry of
        # the delivery publish it again once the lease ran out. SQLite-backed servers answer a
        # busy database under write load.
        for attempt in range(CONFIRM_ATTEMPTS):
            try:
                await self._collection.update_one(
                    {"_id": key},
                    {"$set": {"state": "published", "published_at": datetime.now(UTC)}},
                )
                return
            except PyMongoError:
                if attempt == CONFIRM_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)

    async def release(self, key: str) -> None:
        """Publishing failed: forget the claim so that the platform's retry is accepted."""
        await self._collection.delete_one({"_id": key, "state": "publishing"})
