"""The focal-point registry in MongoDB: one record per email, the latest response wins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.notifier.matching import focal_point_codes
from shared.events import PilotAnnounced, SurveyResponse
from shared.mongo import Document

FOCAL_POINTS = "notifier_focal_points"
PILOTS = "notifier_pilots"


def normalise_email(email: str) -> str:
    """One focal point per mailbox, whatever the case of the address."""
    return email.strip().lower()


class Registry:
    """Focal points and the pilots announced so far."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._focal_points = db[FOCAL_POINTS]
        self._pilots = db[PILOTS]

    async def ensure_indexes(self) -> None:
        """Indexes that keep matching fast with 100,000 focal points."""
        await self._focal_points.create_index([("codes", ASCENDING)])
        await self._focal_points.create_index([("country", ASCENDING)])

    async def register(self, response: SurveyResponse) -> Document | None:
        """Record the focal point of `response` unless a later response of theirs is already in.

        Returns the record when it changed, so that open pilots can be matched against it.
        """
        focal_point = response.focal_point
        if focal_point is None:
            return None
        key = normalise_email(str(focal_point.email))
        record: dict[str, Any] = {
            "email": str(focal_point.email),
            "name": focal_point.name,
            "language": focal_point.language,
            "consent": focal_point.consent,
            "country": response.respondent.country,
            "city": response.respondent.city,
            "codes": focal_point_codes(response),
            "response_id": response.response_id,
            "submitted_at": response.submitted_at,
            # A newer response with consent lifts an earlier unsubscribe.
            "unsubscribed": False,
        }
        try:
            updated = await self._focal_points.find_one_and_update(
                {
                    "_id": key,
                    "submitted_at": {"$lt": response.submitted_at},
                    # A response older than an unsubscribe does not undo it.
                    "$or": [
                        {"unsubscribed_at": {"$exists": False}},
                        {"unsubscribed_at": {"$lt": response.submitted_at}},
                    ],
                },
                {"$set": record},
                upsert=True,
                return_document=True,
            )
        except DuplicateKeyError:
            return None  # a later (or the same) response of this focal point is already in
        return updated

    async def unsubscribe(self, email: str) -> bool:
        """Stop all mail to `email`; False when nobody has that address."""
        result = await self._focal_points.update_one(
            {"_id": normalise_email(email)},
            {"$set": {"unsubscribed": True, "unsubscribed_at": datetime.now(UTC)}},
        )
        return result.matched_count > 0

    async def get(self, email: str) -> Document | None:
        """The record of `email`, if any."""
        return await self._focal_points.find_one({"_id": normalise_email(email)})

    def matching(self, query: dict[str, Any]) -> AsyncIterator[Document]:
        """Focal points that satisfy a matching query."""
        return aiter(self._focal_points.find(query))

    async def remember_pilot(self, pilot: PilotAnnounced) -> None:
        """Keep the pilot, so that a focal point who registers later can still be told of it."""
        await self._pilots.update_one(
            {"_id": pilot.pilot_id},
            {"$setOnInsert": {"pilot": pilot.model_dump(mode="json")}},
            upsert=True,
        )

    async def open_pilots(self, today: date) -> list[PilotAnnounced]:
        """Pilots whose `apply_by` has not passed."""
        pilots = [
            PilotAnnounced.model_validate(document["pilot"])
            async for document in self._pilots.find()
        ]
        return [pilot for pilot in pilots if pilot.is_open(today)]

    async def pilot(self, pilot_id: str) -> PilotAnnounced | None:
        """An announced pilot by id."""
        document = await self._pilots.find_one({"_id": pilot_id})
        return PilotAnnounced.model_validate(document["pilot"]) if document else None
