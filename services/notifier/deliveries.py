"""Deliveries in MongoDB: one per (pilot, focal point), ever. States: pending -> sending -> sent,
or back to pending with a later attempt time (a deferral, or a pause of sending while the SMTP
server fails as a whole: `failures`), or failed for good (a refusal of that delivery), or
suppressed (the address is on the suppression list, `suppressions`: never sent, never retried).

At most one email per pair: the record's `_id` is the pair, so a redelivered or replayed pilot
creates nothing new, and a record is sent only by the replica that claimed it (one claim per
attempt, see `claims`: an insert, atomic on every supported server). A replica that dies before
the end of the SMTP transaction leaves the record `sending`; the server drops a transaction whose
final "." it never got, so the replica that takes the record over once the lease has run out
sends the only copy.

The one window SMTP itself leaves: the server takes responsibility for a message when it answers
the final "." of DATA, and the record says `sent` only once that answer has reached us and one
MongoDB update has been applied. A replica killed in between leaves the record `sending` although
the message went out, and after the lease it is sent again; a reply to DATA that never arrives
(timeout, the send's deadline, a dropped connection) leaves the same doubt, and the delivery is
tried again. Each such event can add one copy, with the same `Message-ID`, so mail clients fold
it. No order of steps closes it (writing `sent` first would lose the message in the same window
instead), so it is kept as small as it can be: that update is the only step between the reply and
the record (no rendering, logging or other I/O in between). The send's overall deadline, at most
half the lease, keeps a slow server from holding a message until another replica takes it over.
`tests/integration/test_notifier_smtp_window.py` lands in the window on purpose.

Confirmation emails (double opt-in, `consent`) are deliveries too, of kind `confirmation`, one
per (confirmation request, focal point): sent once by the same claims, leases and states.

Weekly digest: a delivery for a person who chose it is postponed to the next digest time, and
goes with their other pending pilot deliveries as one message (below).

Digest: with a window, a new delivery waits that long before it is due; the replica that claims it
also claims every other pending delivery of the same focal point, and they go as one message.
Each keeps its own record (one per pair, as always) and they share the message's id and fate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.notifier.bulk import insert_each
from services.notifier.claims import Claims
from services.notifier.records import CONFIRMATION, Delivery, DeliveryStatus
from shared.mongo import Document
from shared.observability import EMAILS

DELIVERIES = "notifier_deliveries"
CLAIM_TRIES = 3
CLAIM_BATCH = 100


def delivery_id(pilot_id: str, email_key: str) -> str:
    """The one record of a (pilot, focal point) pair."""
    return f"{pilot_id}|{email_key}"


def confirmation_id(number: int, email_key: str) -> str:
    """The one record of confirmation request `number` of a focal point."""
    return f"{CONFIRMATION}-{number}|{email_key}"


class Deliveries:
    """The delivery records and their state changes."""

    def __init__(self, db: AsyncDatabase[Document], lease: timedelta) -> None:
        self._deliveries = db[DELIVERIES]
        self._claims = Claims(db)
        self._lease = lease
        self._due: list[Document] = []  # candidates of the last query, oldest first

    async def ensure_indexes(self) -> None:
        """Indexes for the dispatcher's claim and the operators' listing."""
        await self._deliveries.create_index([("state", ASCENDING), ("next_attempt_at", ASCENDING)])
        await self._deliveries.create_index([("pilot_id", ASCENDING)])
        await self._deliveries.create_index([("email_key", ASCENDING)])

    async def create(
        self,
        pilot_id: str,
        email_key: str,
        codes: list[str],
        hold_seconds: float = 0.0,
        *,
        suppressed: str | None = None,
    ) -> bool:
        """A pending delivery, due after `hold_seconds`, or one settled at once as `suppressed`
        (the reason given: it is never sent); False when the pair already has one."""
        now = datetime.now(UTC)
        record: dict[str, Any] = {
            "_id": delivery_id(pilot_id, email_key),
            "pilot_id": pilot_id,
            "email_key": email_key,
            "codes": codes,
            "state": "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now + timedelta(seconds=hold_seconds),
        }
        if suppressed:
            record.update(state="suppressed", settled_at=now, last_error=suppressed)
        try:
            await self._deliveries.insert_one(record)
        except DuplicateKeyError:
            return False
        if suppressed:
            EMAILS.labels("suppressed").inc()
        return True

    async def create_confirmations(self, requests: Sequence[tuple[str, int]]) -> int:
        """The emails of these confirmation requests (focal point's key, request number), due
        now, in one insert; how many were new (the others exist already)."""
        now = datetime.now(UTC)
        inserted = await insert_each(
            self._deliveries,
            [
                {
                    "_id": confirmation_id(number, email_key),
                    "kind": CONFIRMATION,
                    "request": number,
                    "email_key": email_key,
                    "codes": [],
                    "state": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for email_key, number in requests
            ],
        )
        if inserted.refused:  # a key, a number and times: never the document's own fault
            raise next(iter(inserted.refused.values()))
        return len(requests) - len(inserted.duplicates)

    async def claim_due(self, now: datetime | None = None) -> Delivery | None:
        """Take the next delivery that is due, or whose sender died; None when there is none.

        One query fetches up to `CLAIM_BATCH` candidates (a server that scans reads the whole
        collection for it) and the next calls claim them one by one. A candidate seen earlier is
        safe to claim: its claim key names the attempt seen, so a stale one only loses.
        """
        now = now or datetime.now(UTC)
        lost: list[str] = []
        for _ in range(CLAIM_TRIES):
            if not self._due:
                self._due = await self._fetch_due(now, lost)
                if not self._due:
                    return None
            while self._due:
                candidate = self._due.pop(0)
                claimed = await self._take(candidate, now)
                if claimed is not None:
                    return claimed
                lost.append(candidate["_id"])  # another replica has it: try the next one
        return None

    async def _fetch_due(self, now: datetime, lost: list[str]) -> list[Document]:
        query: dict[str, Any] = {
            "$or": [
                {"state": "pending", "next_attempt_at": {"$lte": now}},
                {"state": "sending", "lease_until": {"$lt": now}},
            ]
        }
        if lost:
            query["_id"] = {"$nin": lost}
        cursor = self._deliveries.find(query).sort("next_attempt_at", ASCENDING).limit(CLAIM_BATCH)
        return [candidate async for candidate in cursor]

    async def claim_pending_for(
        self, email_key: str, now: datetime | None = None
    ) -> list[Delivery]:
        """Claim every other pending delivery of one focal point, due or not (for a digest)."""
        now = now or datetime.now(UTC)
        pending = self._deliveries.find(
            {"email_key": email_key, "state": "pending", "kind": {"$ne": CONFIRMATION}}
        ).sort("_id")
        claimed = [await self._take(candidate, now) async for candidate in pending]
        return [delivery for delivery in claimed if delivery is not None]

    async def _take(self, candidate: Document, now: datetime) -> Delivery | None:
        # One claim per (delivery, attempt): of the replicas that saw the same attempt due, one
        # wins, whatever the server. The winner then owns the record until its lease runs out.
        attempt = int(candidate["attempts"]) + 1
        claim = f"{candidate['_id']}#{attempt}"
        if not await self._claims.take(claim, now):
            await self._skip_if_abandoned(candidate, claim, now)
            return None
        fields = {"state": "sending", "lease_until": now + self._lease, "attempts": attempt}
        # The filter re-checks the record as read: a candidate read before the record moved on
        # (sent, failed, or a later attempt) is dropped, also once its old claim was cleaned up.
        current = {"_id": candidate["_id"], "attempts": candidate["attempts"]}
        current["state"] = {"$in": ["pending", "sending"]}
        updated = await self._deliveries.update_one(current, {"$set": fields})
        if updated.matched_count == 0:
            return None
        return Delivery.from_document({**candidate, **fields})

    async def _skip_if_abandoned(self, candidate: Document, claim: str, now: datetime) -> None:
        # A replica that died between its claim and its update would block this attempt number
        # for ever: once the lease has run out, the record moves on to the next number.
        taken_at = await self._claims.taken_at(claim)
        if taken_at is not None and taken_at + self._lease < now:
            attempt = int(candidate["attempts"]) + 1
            await self._deliveries.update_one(
                {"_id": candidate["_id"], "attempts": candidate["attempts"]},
                {"$set": {"attempts": attempt}},
            )

    async def mark_sent(self, keys: Sequence[str], message_id: str) -> None:
        """The SMTP server accepted the message of these deliveries."""
        await self._set(keys, state="sent", sent_at=datetime.now(UTC), message_id=message_id)
        EMAILS.labels("sent").inc(len(keys))

    async def retry_later(self, keys: Sequence[str], error: str, delay_seconds: float) -> None:
        """A transient failure: try again after `delay_seconds`."""
        retry_at = datetime.now(UTC) + timedelta(seconds=delay_seconds)
        await self._set(keys, state="pending", next_attempt_at=retry_at, last_error=error)
        EMAILS.labels("retried").inc(len(keys))

    async def hold(self, keys: Sequence[str], error: str, delay_seconds: float) -> None:
        """The SMTP server failed as a whole (down, login refused, ...): due again after
        `delay_seconds`. `held` counts these attempts, which MAX_ATTEMPTS leaves out."""
        retry_at = datetime.now(UTC) + timedelta(seconds=delay_seconds)
        fields = {"state": "pending", "next_attempt_at": retry_at, "last_error": error}
        for key in keys:
            await self._deliveries.update_one(
                {"_id": key},
                {"$set": fields, "$inc": {"held": 1}, "$unset": {"lease_until": ""}},
            )
        EMAILS.labels("held").inc(len(keys))

    async def postpone(self, keys: Sequence[str], until: datetime) -> None:
        """Due again at `until` (a weekly digest's time); the attempt is not counted."""
        fields = {"state": "pending", "next_attempt_at": until}
        for key in keys:
            await self._deliveries.update_one(
                {"_id": key},
                {"$set": fields, "$inc": {"held": 1}, "$unset": {"lease_until": ""}},
            )

    async def mark_failed(self, keys: Sequence[str], error: str) -> None:
        """A permanent failure (or no one to send to): never tried again."""
        await self._set(keys, state="failed", failed_at=datetime.now(UTC), last_error=error)
        EMAILS.labels("failed").inc(len(keys))

    async def mark_suppressed(self, keys: Sequence[str], reason: str) -> None:
        """The address is on the suppression list: never sent, never tried again."""
        await self._set(keys, state="suppressed", settled_at=datetime.now(UTC), last_error=reason)
        EMAILS.labels("suppressed").inc(len(keys))

    async def release(self, claimed: Sequence[Delivery]) -> None:
        """Hand back deliveries claimed but not sent (the dispatcher is stopping): due at once.

        Safe because no SMTP transaction of theirs started. The filter names the attempt this
        replica claimed, so a record another replica took over meanwhile is left alone.
        """
        back = {"$set": {"state": "pending", "next_attempt_at": datetime.now(UTC)}}
        for delivery in claimed:
            await self._deliveries.update_one(
                {"_id": delivery.key, "state": "sending", "attempts": delivery.attempts},
                {**back, "$unset": {"lease_until": ""}},
            )

    async def for_pilot(self, pilot_id: str) -> list[DeliveryStatus]:
        """Every delivery of one pilot, by id (anonymised copies included)."""
        found = self._deliveries.find({"pilot_id": pilot_id}).sort("_id")
        return [DeliveryStatus.from_document(d) async for d in found]

    async def of_focal_point(self, email_key: str) -> list[DeliveryStatus]:
        """Every delivery of one focal point, oldest first (what was sent to them, for their
        own page)."""
        found = self._deliveries.find({"email_key": email_key}).sort("created_at", ASCENDING)
        return [DeliveryStatus.from_document(d) async for d in found]

    async def _set(self, keys: Sequence[str], **fields: Any) -> None:
        # One update per key: `{_id: value}` is the filter every supported server looks up
        # directly, and a digest holds only a few deliveries.
        for key in keys:
            await self._deliveries.update_one(
                {"_id": key}, {"$set": fields, "$unset": {"lease_until": ""}}
            )
