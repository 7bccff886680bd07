"""Erasure and retention of what the notifier keeps about a person.

An erasure request (`privacy.erasures.v1`) names the person by the keyed hash of the address
(`shared.personal`), the key of everything the notifier keeps about them:

1. the registry record becomes a tombstone with nothing personal (`Registry.erase`): no address,
   name, city or interests, and responses submitted before the request cannot register the
   person again; the match index is updated and the link ids are deleted;
2. every delivery of the person is replaced by an anonymous copy (`<pilot>|erased-<request>`)
   that keeps the pilot, the state and the times, so the pilot's counts stay: `sent` and `failed`
   stay, `pending` and `sending` become `cancelled`; the original (whose id holds the key) and
   its claims are deleted. A message an SMTP server had already accepted is not recalled;
3. the erasure is recorded, without the address, in `notifier_erasures`: request id, key,
   times and what was removed.

Every step is idempotent and the Kafka offset is committed after the last, so a crash mid-way
reads the event again and the rerun finishes. A response submitted after the request is a new
consent: it registers the person again.

Retention: settled deliveries (`sent`, `failed`) older than `PERSONAL_DATA_RETENTION_DAYS` lose
what could describe the person beyond the key (the SMTP server's last reply, which may quote the
address, the matched interests and the Message-ID); the key stays, so that a pilot is still
never sent twice to one person, and goes with an erasure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.notifier.claims import CLAIMS
from services.notifier.deliveries import DELIVERIES
from services.notifier.records import CONFIRMATION
from services.notifier.registry import Registry
from shared.events import ErasureRequested
from shared.mongo import Document

ERASURES = "notifier_erasures"
SETTLED = ("sent", "failed")
CANCELLED = "cancelled"
logger = logging.getLogger(__name__)


def anonymous_delivery(delivery: Document, request_id: str, now: datetime) -> Document:
    """The copy of a person's delivery that an erasure keeps: the pilot (or, for the email of a
    confirmation request, its kind and number), the state and the times, nothing that names or
    describes the person. Its id is one per (pilot or request, erasure request)."""
    state = delivery["state"] if delivery["state"] in SETTLED else CANCELLED
    if "pilot_id" in delivery:
        about: Document = {"pilot_id": delivery["pilot_id"]}
        subject = str(delivery["pilot_id"])
    else:
        about = {"kind": delivery.get("kind", CONFIRMATION), "request": delivery.get("request")}
        subject = f"{about['kind']}-{about['request']}"
    copy: Document = {
        "_id": f"{subject}|erased-{request_id}",
        **about,
        "state": state,
        "attempts": delivery.get("attempts", 0),
        "created_at": delivery.get("created_at", now),
        "erasure_id": request_id,
        "erased_at": now,
    }
    for settled_at in ("sent_at", "failed_at"):
        if settled_at in delivery:
            copy[settled_at] = delivery[settled_at]
    return copy


def claim_ids(delivery: Document) -> list[str]:
    """Every claim a delivery's attempts can have taken (`deliveries`: `<id>#<attempt>`)."""
    return [f"{delivery['_id']}#{n}" for n in range(1, int(delivery.get("attempts", 0)) + 2)]


class NotifierErasure:
    """Erasure requests and the retention sweep of the notifier's records."""

    def __init__(self, db: AsyncDatabase[Document], registry: Registry, step_delay: float = 0.0):
        self._registry = registry
        self._deliveries = db[DELIVERIES]
        self._claims = db[CLAIMS]
        self._erasures = db[ERASURES]
        # A pause between two steps: lets a fault test land a crash mid-way (0 in service).
        self._step_delay = step_delay

    async def ensure_indexes(self) -> None:
        """A person's deliveries by key; the sweep's range of settled ones by age."""
        await self._deliveries.create_index([("email_key", ASCENDING)])
        await self._deliveries.create_index([("state", ASCENDING), ("created_at", ASCENDING)])

    async def erase(self, event: ErasureRequested) -> Document:
        """Erase what is kept about `event`'s person; the record of the erasure."""
        request_id, key = event.request_id, event.email_key
        started: Document = {
            "email_key": key,
            "requested_at": event.requested_at,
            "started_at": datetime.now(UTC),
            "state": "started",
        }
        await self._erasures.update_one({"_id": request_id}, {"$setOnInsert": started}, upsert=True)
        done = await self._erasures.find_one({"_id": request_id, "state": "done"})
        if done is not None:
            return done  # the same request again: nothing more to do
        logger.info("erasure %s: started", request_id)
        removed = await self._registry.erase(key, event.requested_at, request_id)
        # A rerun after a crash finds less to remove: the record keeps the first count.
        await self._erasures.update_one(
            {"_id": request_id, "removed.focal_points": {"$exists": False}},
            {"$set": {f"removed.{name}": count for name, count in removed.items()}},
        )
        await self._pause()
        # A new consent given after the request: what is kept now is about it.
        cursor = self._deliveries.find({"email_key": key})
        held = [] if "newer_consent" in removed else [d async for d in cursor]
        for delivery in held:
            await self._anonymise(delivery, request_id)
            await self._pause()
        copies = self._deliveries.find({"erasure_id": request_id}, {"state": True})
        states = Counter([str(copy["state"]) async for copy in copies])
        finished = {
            "state": "done",
            "completed_at": datetime.now(UTC),
            **{f"removed.deliveries_{state}": count for state, count in states.items()},
        }
        await self._erasures.update_one({"_id": request_id}, {"$set": finished})
        logger.info("erasure %s: done, %d deliveries anonymised", request_id, states.total())
        record = await self._erasures.find_one({"_id": request_id})
        return record or {}

    async def _anonymise(self, delivery: Document, request_id: str) -> None:
        # Copy first, then the claims, then the original: each step again finds what is left.
        with contextlib.suppress(DuplicateKeyError):  # copied before a crash
            await self._deliveries.insert_one(
                anonymous_delivery(delivery, request_id, datetime.now(UTC))
            )
        await self._claims.delete_many({"_id": {"$in": claim_ids(delivery)}})
        await self._deliveries.delete_one({"_id": delivery["_id"]})

    async def _pause(self) -> None:
        if self._step_delay:
            await asyncio.sleep(self._step_delay)

    async def sweep(self, retention: timedelta, now: datetime | None = None) -> int:
        """Strip settled deliveries created before `now - retention`; how many changed."""
        cutoff = (now or datetime.now(UTC)) - retention
        query: dict[str, Any] = {
            "state": {"$in": list(SETTLED)},
            "created_at": {"$lt": cutoff},
            "codes": {"$exists": True},  # not swept yet
        }
        stripped = {"$unset": {"codes": "", "last_error": "", "message_id": ""}}
        result = await self._deliveries.update_many(query, stripped)
        return result.modified_count
