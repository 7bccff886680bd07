"""Erasure and retention of the personal data in analytics' stored responses.

Analytics never stores a focal point's name or address (`documents.raw_document`), but a
response's free answers may name people, and a response is linked to its focal point by
`focal_point_key`, the keyed hash of the address (`shared.personal`). Both go:

- on an erasure request (`privacy.erasures.v1`), from every stored response whose
  `focal_point_key` is the request's and that was submitted at or before the request (a later
  response is a new consent); responses stored before `focal_point_key` existed cannot be told
  apart by address (analytics never had it) and are reached by the retention sweep instead;
- by the retention sweep, from every response received more than
  `PERSONAL_DATA_RETENTION_DAYS` ago, read through the `(personal, received_at)` index, and
  only when the hours marked as holding personal data say that some are due.

What is counted stays exactly as it was: codes, respondent type, country, city, submission
time and whether there was a (consenting) focal point; `verify` and the summaries are unchanged.
The free answers go whole (`{}`): a number identifies as well as a name ("a staff of 4" in a
named city), no count reads them, and an update that is the same for every response lets the
sweep be one statement, where one per response would cost a collection scan each on the local
MongoDB-wire server. Each erasure is recorded, without the address, in `analytics_erasures`.
Every step is idempotent, so an event read again after a crash finishes the work and changes
nothing that was done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.analytics.store import MARKS_COMPLETE, MARKS_INCOMPLETE, PERSONAL_HOURS, RESPONSES
from shared.events import ErasureRequested
from shared.mongo import Document

ERASURES = "analytics_erasures"
SWEEP_BATCH = 500
# A marked hour is dropped once it ended this long before the cutoff: by then a response received
# in it is stored anonymised at once (`raw_document`), so no store can need the mark again.
SPENT_AFTER = timedelta(hours=1)
logger = logging.getLogger(__name__)


def anonymised(now: datetime, request_id: str | None) -> Document:
    """The update that removes the personal data of stored responses: the same for each, so
    one statement covers them all."""
    marks: Document = {"answers": {}, "personal": False, "anonymised_at": now}
    if request_id is not None:
        marks["erasure_id"] = request_id
    return {"$set": marks, "$unset": {"focal_point_key": ""}}


class AnalyticsErasure:
    """Erasure requests and the retention sweep over `analytics_responses`."""

    def __init__(self, db: AsyncDatabase[Document], step_delay: float = 0.0) -> None:
        self._responses = db[RESPONSES]
        self._hours = db[PERSONAL_HOURS]
        self._erasures = db[ERASURES]
        # Pause between two responses: lets a fault test land a crash mid-way (0 in service).
        self._step_delay = step_delay

    async def ensure_indexes(self) -> None:
        """The erasure's lookup by key and the sweep's range by age."""
        await self._responses.create_index([("focal_point_key", ASCENDING)], sparse=True)
        await self._responses.create_index([("personal", ASCENDING), ("received_at", ASCENDING)])

    async def erase(self, event: ErasureRequested) -> Document:
        """Remove the personal data of the responses of `event`'s person; the record of it."""
        done = await self._erasures.find_one({"_id": event.request_id})
        if done is not None:
            return done  # the same request again: nothing more to do
        logger.info("erasure %s: started", event.request_id)
        submitted_by = event.requested_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        query = {"focal_point_key": event.email_key, "submitted_at": {"$lte": submitted_by}}
        # One update per response (a person has a few), so that a crash can land between two.
        ids = [document["_id"] async for document in self._responses.find(query, {"_id": True})]
        for response_id in ids:
            await self._responses.update_one(
                {"_id": response_id, "focal_point_key": event.email_key},
                anonymised(datetime.now(UTC), event.request_id),
            )
            if self._step_delay:
                await asyncio.sleep(self._step_delay)
        # Counted at the end, so a run that a crash cut short and its rerun record one number.
        erased = await self._responses.count_documents({"erasure_id": event.request_id})
        record: Document = {
            "_id": event.request_id,
            "email_key": event.email_key,
            "requested_at": event.requested_at,
            "completed_at": datetime.now(UTC),
            "removed": {"stored_responses_answers": erased},
        }
        # Another replica may have finished the same request.
        with contextlib.suppress(DuplicateKeyError):
            await self._erasures.insert_one(record)
        logger.info("erasure %s: done, %d stored responses", event.request_id, erased)
        return await self._erasures.find_one({"_id": event.request_id}) or record

    async def sweep(self, retention: timedelta, now: datetime | None = None) -> int:
        """Anonymise every response received before `now - retention`; how many changed.

        Reads the stored responses only when a marked hour with personal data is due
        (`store.PERSONAL_HOURS`; always in a database stored before the marks existed): on the
        local MongoDB-wire server every such read is a scan, which a sweep at each start and
        every hour would repeat however little is due.

        In updates of at most `SWEEP_BATCH` responses, each one statement: a statement that
        changed the whole backlog at once (a first sweep over a campaign imported a year late)
        would hold the local MongoDB-wire server's SQLite writer for minutes and starve the
        consumer, whose writes then fail as busy."""
        now = now or datetime.now(UTC)
        cutoff = (now - retention).strftime("%Y-%m-%dT%H:%M:%SZ")
        marks = {str(document["_id"]) async for document in self._hours.find({})}
        complete = MARKS_COMPLETE in marks and MARKS_INCOMPLETE not in marks
        marks -= {MARKS_COMPLETE, MARKS_INCOMPLETE}
        # Every stored response marked: scan only when an hour with personal data is due.
        if complete and not due_hours(marks, cutoff):
            return 0
        # `personal` absent: stored before the field existed.
        query = {"personal": {"$in": [True, None]}, "received_at": {"$lt": cutoff}}
        changed = 0
        while True:
            due = self._responses.find(query, {"_id": True}).limit(SWEEP_BATCH)
            ids = [document["_id"] async for document in due]
            if ids:
                result = await self._responses.update_many(
                    {**query, "_id": {"$in": ids}}, anonymised(now, None)
                )
                changed += result.modified_count
            if len(ids) < SWEEP_BATCH:
                break
        if complete and (spent := spent_hours(marks, cutoff)):
            await self._hours.delete_many({"_id": {"$in": spent}})
        return changed


def due_hours(marks: Iterable[str], cutoff: str) -> list[str]:
    """The marked hours (`2024-05-02T10`) that began before `cutoff`: some of their responses
    may be due for the sweep."""
    return sorted(hour for hour in marks if f"{hour}:00:00Z" < cutoff)


def spent_hours(marks: Iterable[str], cutoff: str) -> list[str]:
    """The marked hours that ended `SPENT_AFTER` or more before `cutoff`: swept whole."""
    limit = datetime.strptime(cutoff, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - SPENT_AFTER
    return sorted(
        hour
        for hour in marks
        if datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC) + timedelta(hours=1) <= limit
    )
