"""Idempotency across restarts and replicas: MongoDB records per accepted id (the only I/O here).

No step reads a collection that grows with the campaign: on FerretDB every read, update or
delete by `_id` scans its collection, and only the insert of a new `_id` is checked by an index.
So each store keeps four collections:

- `<name>`: one document per id ever decided, written once by an insert and never read. Its
  insert fails exactly when the id was decided before (published, or found sealed): the answer
  to a redelivery costs an index lookup however many ids are stored.
- `<name>_pending`: the ids not known to be published: being published right now, left by a
  publish that failed (`released`), or by a replica that died mid-publish. It holds what is in
  flight and what failed, so reading it stays cheap even where every read scans.
- `<name>_takeovers`: one marker per takeover of a pending record (below).
- `<name>_upgrades`: one marker once the claims of earlier versions were taken over (`upgrade`).

A delivery first inserts its pending record (a second delivery meanwhile finds it and is told
the id is in flight), then the id itself: new, or decided before (a duplicate, and its pending
record goes). Once the broker acknowledged the event, the pending record is deleted (`confirm`);
the request is answered while that delete is on its way (`confirm_soon`): this process answers
later deliveries as duplicates meanwhile, and other replicas find the id in flight, as they did
while it was being published. The pending record goes in before the id: the other way round, a
delivery that found the id inserted could not tell one being published (or failing) right now
from one published long ago. A publish that failed marks its record `released`, and the next
delivery takes it over at once; a record older than the lease belongs to a replica that died, and
the next delivery takes it over once the lease ran out. A taker publishes whatever the dead
replica got to do: its event may have reached the broker already, which the consumers count once.

Every decision that two replicas may race for is the insert of a new `_id`, the one write that
every supported server makes atomic: a conditional update is not atomic on FerretDB, where two
replicas can both match the same stale record and both write. So a takeover first inserts a
marker named after the stale record; only the replica whose insert succeeded goes on, and each
record carries a claim id of its own so that an owner that was taken over cannot release its
successor's claim.

A claim may name a *seal*: another id whose insert, made by the same delivery, fails when some
other event sealed it first (`seal`). The response claims use it for revisions
(`revisions.py`). Only a key's first delivery asks its seal; later ones are duplicates anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.intake.batching import DeleteBatcher, InsertBatcher
from shared.mongo import Document

CONFIRM_ATTEMPTS = 5
PUBLISHING, RELEASED = "publishing", "released"
UPGRADES = "upgrades"
PENDING_RECORDS = "pending-records"  # the upgrade of the claims of earlier versions
logger = logging.getLogger(__name__)


class Claim(StrEnum):
    """What a claim attempt found."""

    CLAIMED = "claimed"  # ours to publish
    DUPLICATE = "duplicate"  # decided before: published, or found sealed
    IN_FLIGHT = "in_flight"  # another delivery holds it right now
    SEALED = "sealed"  # a first delivery, but its seal was set: not to be published


class ClaimStore:
    """Claims on ids (response ids, pilot ids) in one collection and its companions."""

    def __init__(self, collection: AsyncCollection[Document], lease: timedelta) -> None:
        self._decided = collection
        database = collection.database
        self._pending = database[f"{collection.name}_pending"]
        self._takeovers = database[f"{collection.name}_takeovers"]
        self._upgrades = database[f"{collection.name}_{UPGRADES}"]
        # Inserts and confirmations of concurrent requests go together (group commit): one write
        # command each for a batch, where one per request would each take the write lock.
        self._inserts = InsertBatcher(collection)
        self._pending_inserts = InsertBatcher(self._pending)
        self._confirmations = DeleteBatcher(self._pending)
        self._lease = lease
        # key -> id of the claim this store took and has not settled yet. One process publishes
        # a key once at a time (a second delivery meanwhile is in flight), so one entry suffices.
        self._held: dict[str, str] = {}
        # key -> the confirmation on its way of a key this process published (`confirm_soon`).
        self._confirming: dict[str, asyncio.Task[None]] = {}
        # Asked by the first claim, not at start: the intake starts while MongoDB is down.
        self._upgraded = False
        self._upgrading = asyncio.Lock()

    @property
    def lease(self) -> timedelta:
        """How long a claim keeps other deliveries of its id off unless it is renewed."""
        return self._lease

    async def claim(self, key: str, now: datetime | None = None, seal: str | None = None) -> Claim:
        """Try to take `key` for publishing. `seal`: an id that, set before this first delivery
        of `key`, makes it `SEALED` (asked only of a first delivery: later ones are duplicates)."""
        now = now or datetime.now(UTC)
        if key in self._confirming:  # published by this process, its confirmation on its way
            return Claim.DUPLICATE
        if not self._upgraded:
            await self.upgrade()
        claim_id = uuid.uuid4().hex
        try:
            await self._pending_inserts.insert(
                {"_id": key, "state": PUBLISHING, "claimed_at": now, "claim": claim_id}
            )
        except DuplicateKeyError:
            return await self._contend(key, now, seal)
        self._held[key] = claim_id
        try:
            decided = await self._decide(key, seal)
        except BaseException:
            await self.release(key)
            raise
        if decided is not Claim.CLAIMED:
            await self._drop_pending(key)
        return decided

    async def _decide(self, key: str, seal: str | None) -> Claim:
        """Insert `key` (and `seal`, side by side): new and ours, or decided before."""
        inserts = [self._inserts.insert({"_id": key})]
        if seal is not None:
            inserts.append(self._inserts.insert({"_id": seal}))
        found = await asyncio.gather(*inserts, return_exceptions=True)
        if isinstance(found[0], DuplicateKeyError):
            return Claim.DUPLICATE
        if isinstance(found[0], BaseException):
            raise found[0]
        # A seal that failed otherwise is taken as unset: a late older revision then goes out,
        # and its consumers keep the newest.
        if seal is not None and isinstance(found[1], DuplicateKeyError):
            return Claim.SEALED
        return Claim.CLAIMED

    async def _drop_pending(self, key: str) -> None:
        """Remove the pending record of a key that turned out decided (nothing to publish)."""
        self._held.pop(key, None)
        try:
            await self._confirmations.delete(key)
        except PyMongoError as exc:  # taken over once its lease ran out: published at worst
            logger.warning("cannot remove the pending record of %s: %s", key, exc)

    async def _contend(self, key: str, now: datetime, seal: str | None) -> Claim:
        """Another delivery holds, or held, a pending record of `key`."""
        pending = await self._pending.find_one({"_id": key})
        if pending is None:  # settled since our insert
            return await self.claim(key, now, seal)
        if pending["state"] == PUBLISHING and pending["claimed_at"] > now - self._lease:
            return Claim.IN_FLIGHT
        return await self._take_over(key, pending, now, seal)

    async def _take_over(
        self, key: str, stale: dict[str, Any], now: datetime, seal: str | None
    ) -> Claim:
        # Named after the stale record and its last renewal: one takeover of each, ever.
        marker = f"{key} {stale['claim']} {stale['claimed_at'].isoformat()}"
        try:
            await self._takeovers.insert_one({"_id": marker, "at": now})
        except DuplicateKeyError:
            return Claim.IN_FLIGHT  # another replica took it over
        claim_id = uuid.uuid4().hex
        taken = await self._pending.update_one(
            {"_id": key, "claim": stale["claim"], "claimed_at": stale["claimed_at"]},
            {"$set": {"state": PUBLISHING, "claimed_at": now, "claim": claim_id}},
        )
        if taken.matched_count == 0:  # renewed, confirmed or released meanwhile: look again
            return await self.claim(key, now, seal)
        self._held[key] = claim_id
        return Claim.CLAIMED

    async def seal(self, seals: list[str]) -> None:
        """Set `seals`: a first delivery of a key claimed with one of them is `SEALED` from now.
        Those set before are left as they are."""
        done = await asyncio.gather(
            *(self._inserts.insert({"_id": seal}) for seal in seals), return_exceptions=True
        )
        for outcome in done:
            if isinstance(outcome, BaseException) and not isinstance(outcome, DuplicateKeyError):
                raise outcome

    async def confirm(self, key: str) -> None:
        """The broker acknowledged `key`: every later delivery of it is a duplicate."""
        # Retried: the event is already in Kafka, and a pending record left behind would let a
        # retry of the delivery publish it again once the lease ran out. SQLite-backed servers
        # answer a busy database under write load.
        self._held.pop(key, None)
        for attempt in range(CONFIRM_ATTEMPTS):
            try:
                await self._confirmations.delete(key)
                return
            except PyMongoError:
                if attempt == CONFIRM_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)

    def confirm_soon(self, key: str) -> asyncio.Task[None]:
        """`confirm` in the background, for a key the broker acknowledged: from now on a claim
        of `key` in this process is a duplicate, and one in another replica finds it in flight
        until the confirmation is written, as it did while the key was being published.
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
        await self._pending.update_one(self._own(key), {"$set": {"claimed_at": datetime.now(UTC)}})

    async def release(self, key: str) -> None:
        """Publishing failed: the next delivery of `key` takes the claim over at once."""
        held = self._own(key)
        self._held.pop(key, None)
        await self._pending.update_one(held, {"$set": {"state": RELEASED}})

    def _own(self, key: str) -> dict[str, Any]:
        """The filter of the pending record of `key` as this store holds it (not a successor's,
        if it was taken over)."""
        held: dict[str, Any] = {"_id": key, "state": PUBLISHING}
        if (claim_id := self._held.get(key)) is not None:
            held["claim"] = claim_id
        return held

    async def record_decided(self, keys: list[str]) -> None:
        """Record `keys` as decided long ago, as a campaign leaves them (a benchmark preloads
        a database with them): one insert, no pending records, nothing left to upgrade."""
        if keys:
            await self._decided.insert_many([{"_id": key} for key in keys], ordered=False)
        with contextlib.suppress(DuplicateKeyError):
            await self._upgrades.insert_one({"_id": PENDING_RECORDS, "at": datetime.now(UTC)})
        self._upgraded = True

    async def upgrade(self) -> None:
        """Once per database: give every claim an earlier version left unconfirmed a pending
        record, so that its next delivery takes it over as before (earlier versions kept each
        claim's state in the claim and confirmations in `<name>_published`). One read of both,
        ever; running it again, or in several replicas at once, changes nothing. The first
        claim of each store runs it (and fails with it while the database is down)."""
        async with self._upgrading:
            if not self._upgraded:
                await self._upgrade()
                self._upgraded = True

    async def _upgrade(self) -> None:
        if await self._upgrades.find_one({"_id": PENDING_RECORDS}) is not None:
            return
        published = self._decided.database[f"{self._decided.name}_published"]
        confirmed = {document["_id"] async for document in published.find({}, ["_id"])}
        async for claim in self._decided.find({"state": PUBLISHING}):
            if claim["_id"] in confirmed:
                continue
            record = {
                "_id": claim["_id"],
                "state": PUBLISHING,
                "claimed_at": claim["claimed_at"],
                # Claims written before claims had ids: named by their time alone.
                "claim": claim.get("claim", ""),
            }
            try:
                await self._pending.insert_one(record)
            except DuplicateKeyError:
                continue  # upgraded by another replica, or claimed again since
        try:
            await self._upgrades.insert_one({"_id": PENDING_RECORDS, "at": datetime.now(UTC)})
        except DuplicateKeyError:
            return
