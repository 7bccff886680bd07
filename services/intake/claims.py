"""Idempotency across restarts and replicas: a MongoDB record per accepted id (the only I/O here).

A delivery first *claims* its id, then publishes, then *confirms*. A second delivery of the same id
finds the confirmation (a duplicate), or a fresh claim (another replica is publishing it now),
or a claim older than the lease (its replica died mid-publish), which it takes over. Once the
broker acknowledged an id, the delivery is answered while its confirmation is still being
written (`confirm_soon`): the replica that published it answers later deliveries as duplicates
meanwhile, and the others find its claim in flight as they did while it was being published.

Every decision that two replicas may race for is the insert of a new `_id`, the one write that
every supported server makes atomic: a conditional update is not atomic on FerretDB, where two
replicas can both match the same stale claim and both write. So a takeover first inserts a marker
named after the stale claim (`<collection>_takeovers`); only the replica whose insert succeeded
goes on, and each claim carries an id of its own so that an owner that was taken over cannot
release its successor's claim.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.intake.batching import InsertBatcher
from shared.mongo import Document

CONFIRM_ATTEMPTS = 5
logger = logging.getLogger(__name__)


class Claim(StrEnum):
    """What a claim attempt found."""

    CLAIMED = "claimed"  # ours to publish
    DUPLICATE = "duplicate"  # already published
    IN_FLIGHT = "in_flight"  # another replica is publishing it right now


class ClaimStore:
    """Claims on ids (response ids, pilot ids) in one collection."""

    def __init__(self, collection: AsyncCollection[Document], lease: timedelta) -> None:
        self._collection = collection
        self._takeovers = collection.database[f"{collection.name}_takeovers"]
        # A confirmation is an insert too (into `<collection>_published`): batched with those of
        # concurrent requests, where updates of the claims would each take the write lock.
        self._published = collection.database[f"{collection.name}_published"]
        self._inserts = InsertBatcher(collection)
        self._confirmations = InsertBatcher(self._published)
        self._lease = lease
        # key -> id of the claim this store took and has not settled yet. One process publishes
        # a key once at a time (a second delivery meanwhile is in flight), so one entry suffices.
        self._held: dict[str, str] = {}
        # key -> the confirmation on its way of a key this process published (`confirm_soon`).
        self._confirming: dict[str, asyncio.Task[None]] = {}

    @property
    def lease(self) -> timedelta:
        """How long a claim keeps other deliveries of its id off unless it is renewed."""
        return self._lease

    async def claim(self, key: str, now: datetime | None = None) -> Claim:
        """Try to take `key` for publishing."""
        now = now or datetime.now(UTC)
        if key in self._confirming:  # published by this process, its confirmation on its way
            return Claim.DUPLICATE
        # Insert first: a new id, the common case, then costs one write shared with concurrent
        # requests (group commit), and a redelivery a failed insert and a read or two.
        claim_id = uuid.uuid4().hex
        try:
            await self._inserts.insert(
                {"_id": key, "state": "publishing", "claimed_at": now, "claim": claim_id}
            )
        except DuplicateKeyError:
            pass
        else:
            self._held[key] = claim_id
            return Claim.CLAIMED
        if await self._published.find_one({"_id": key}) is not None:
            return Claim.DUPLICATE
        existing = await self._collection.find_one({"_id": key})
        if existing is None:  # released since our insert
            return await self.claim(key, now)
        # Claims confirmed before confirmations had a collection of their own.
        if existing["state"] == "published":
            return Claim.DUPLICATE
        if existing["claimed_at"] > now - self._lease:
            return Claim.IN_FLIGHT
        return await self._take_over(key, existing, now)

    async def _take_over(self, key: str, stale: dict[str, Any], now: datetime) -> Claim:
        # Named after the stale claim and its last renewal: one takeover of each, ever. Claims
        # written before claims had ids are told apart by their time alone.
        marker = f"{key} {stale.get('claim', '')} {stale['claimed_at'].isoformat()}"
        try:
            await self._takeovers.insert_one({"_id": marker, "at": now})
        except DuplicateKeyError:
            return Claim.IN_FLIGHT  # another replica took it over
        claim_id = uuid.uuid4().hex
        taken = await self._collection.update_one(
            {
                "_id": key,
                "state": "publishing",
                "claimed_at": stale["claimed_at"],
                "claim": stale.get("claim", {"$exists": False}),
            },
            {"$set": {"claimed_at": now, "claim": claim_id}},
        )
        if taken.matched_count == 0:  # renewed, confirmed or released meanwhile: look again
            return await self.claim(key, now)
        self._held[key] = claim_id
        return Claim.CLAIMED

    async def confirm(self, key: str) -> None:
        """The broker acknowledged `key`: every later delivery of it is a duplicate."""
        # Retried: the event is already in Kafka, and an unconfirmed claim would let a retry of
        # the delivery publish it again once the lease ran out. SQLite-backed servers answer a
        # busy database under write load.
        self._held.pop(key, None)
        for attempt in range(CONFIRM_ATTEMPTS):
            try:
                await self._confirmations.insert({"_id": key, "at": datetime.now(UTC)})
                return
            except DuplicateKeyError:
                return  # confirmed by an attempt whose answer was lost
            except PyMongoError:
                if attempt == CONFIRM_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)

    def confirm_soon(self, key: str) -> asyncio.Task[None]:
        """`confirm` in the background, for a key the broker acknowledged: from now on a claim
        of `key` in this process is a duplicate, and one in another replica finds the claim in
        flight until the confirmation is written, as it did while the key was being published.
        A confirmation that fails leaves the claim to be taken over once its lease ran out."""
        task = asyncio.create_task(self._confirm_logged(key), name=f"confirm:{key}")
        self._confirming[key] = task
        task.add_done_callback(lambda _: self._confirming.pop(key, None))
        return task

    async def _confirm_logged(self, key: str) -> None:
        try:
            await self.confirm(key)
        except PyMongoError as exc:
            logger.warning("cannot confirm the claim on %s: %s", key, exc)

    async def renew(self, key: str) -> None:
        """Still publishing `key`: start its lease again, so that no other replica takes it over."""
        await self._collection.update_one(
            {"_id": key, "state": "publishing"}, {"$set": {"claimed_at": datetime.now(UTC)}}
        )

    async def release(self, key: str) -> None:
        """Publishing failed: forget the claim so that the platform's retry is accepted."""
        held: dict[str, Any] = {"_id": key, "state": "publishing"}
        if (claim_id := self._held.pop(key, None)) is not None:
            held["claim"] = claim_id  # not a successor's claim, if this one was taken over
        await self._collection.delete_one(held)
