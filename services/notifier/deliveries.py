"""Deliveries in MongoDB: one per (pilot, focal point), ever. States: pending -> sending -> sent,
or back to pending with a later attempt time on a transient failure, or failed on a permanent one.

At most one email per pair: the record's `_id` is the pair, so a redelivered or replayed pilot
creates nothing new, and a record is sent only by the replica that claimed it. The one window SMTP
leaves: a replica that dies after the server accepted the message and before `mark_sent` leaves the
record `sending`; after the lease another replica sends it again. The window is the time of one
MongoDB update; the repeated message carries the same `Message-ID`, so mail clients fold it.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.mongo import Document

DELIVERIES = "notifier_deliveries"


def delivery_id(pilot_id: str, email_key: str) -> str:
    """The one record of a (pilot, focal point) pair."""
    return f"{pilot_id}|{email_key}"


def backoff(attempts: int, first: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try: exponential, capped, with jitter so replicas do not align."""
    # The exponent is bounded first: 2.0 ** 1100 would overflow long before the cap applies.
    delay = min(cap, first * 2.0 ** min(max(0, attempts - 1), 64))
    jitter: float = (rng or random.Random()).random()
    return delay * (0.5 + jitter / 2)


class Deliveries:
    """The delivery records and their state changes."""

    def __init__(self, db: AsyncDatabase[Document], lease: timedelta) -> None:
        self._deliveries = db[DELIVERIES]
        self._lease = lease

    async def ensure_indexes(self) -> None:
        """Indexes for the dispatcher's claim and the operators' listing."""
        await self._deliveries.create_index([("state", ASCENDING), ("next_attempt_at", ASCENDING)])
        await self._deliveries.create_index([("pilot_id", ASCENDING)])

    async def create(self, pilot_id: str, email_key: str, codes: list[str]) -> bool:
        """A pending delivery; False when the pair already has one (sent or not)."""
        now = datetime.now(UTC)
        try:
            await self._deliveries.insert_one(
                {
                    "_id": delivery_id(pilot_id, email_key),
                    "pilot_id": pilot_id,
                    "email_key": email_key,
                    "codes": codes,
                    "state": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def claim_due(self, now: datetime | None = None) -> Document | None:
        """Take the next delivery that is due, or whose sender died; None when there is none."""
        now = now or datetime.now(UTC)
        return await self._deliveries.find_one_and_update(
            {
                "$or": [
                    {"state": "pending", "next_attempt_at": {"$lte": now}},
                    {"state": "sending", "lease_until": {"$lt": now}},
                ]
            },
            {
                "$set": {"state": "sending", "lease_until": now + self._lease},
                "$inc": {"attempts": 1},
            },
            sort=[("next_attempt_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    async def mark_sent(self, key: str, message_id: str) -> None:
        """The SMTP server accepted the message."""
        await self._set(key, state="sent", sent_at=datetime.now(UTC), message_id=message_id)

    async def retry_later(self, key: str, error: str, delay_seconds: float) -> None:
        """A transient failure: try again after `delay_seconds`."""
        retry_at = datetime.now(UTC) + timedelta(seconds=delay_seconds)
        await self._set(key, state="pending", next_attempt_at=retry_at, last_error=error)

    async def mark_failed(self, key: str, error: str) -> None:
        """A permanent failure (or no one to send to): never tried again."""
        await self._set(key, state="failed", failed_at=datetime.now(UTC), last_error=error)

    async def for_pilot(self, pilot_id: str) -> list[Document]:
        """Every delivery of one pilot."""
        return [d async for d in self._deliveries.find({"pilot_id": pilot_id}).sort("_id")]

    async def _set(self, key: str, **fields: Any) -> None:
        await self._deliveries.update_one(
            {"_id": key}, {"$set": fields, "$unset": {"lease_until": ""}}
        )
