"""The analytics MongoDB adapter; the only module that knows its collection names.

Exactly-once effect without transactions, from two single-document atomic steps:

1. Every response is stored raw under `_id = response_id` with the Kafka position (partition,
   offset) of the first message that carried it. A message *counts* only where its own position is
   the stored one: a duplicate elsewhere in the topic never counts, and a replay of the very same
   message still counts (in case the crash came before step 2).
2. Each aggregate document carries a watermark per partition: the last offset applied to it. Its
   increments are applied by compare-and-set on those watermarks, counting only offsets above them,
   so a batch applied twice, by a zombie or after a crash, adds nothing the second time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.analytics.aggregates import OVERALL, increments, survey_key
from shared.events import SurveyResponse
from shared.mongo import Document

RESPONSES = "analytics_responses"
AGGREGATES = "analytics_aggregates"
DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class Positioned:
    """A response and where it sits in the topic."""

    response: SurveyResponse
    partition: int
    offset: int

    @property
    def position(self) -> dict[str, int]:
        return {"partition": self.partition, "offset": self.offset}


def raw_document(item: Positioned) -> Document:
    """What is kept of a response: no focal-point name or email ever reaches analytics' data."""
    document = item.response.model_dump(mode="json", exclude={"focal_point"})
    document["_id"] = document.pop("response_id")
    document["has_focal_point"] = item.response.focal_point is not None
    document["position"] = item.position
    return document


def from_raw_document(document: Document) -> SurveyResponse:
    """The response back from its raw document, for recounts."""
    fields = {key: value for key, value in document.items() if key not in ("_id", "position")}
    return SurveyResponse.model_validate({**fields, "response_id": document["_id"]})


class AnalyticsStore:
    """Raw responses and aggregate documents."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._responses = db[RESPONSES]
        self._aggregates = db[AGGREGATES]

    async def record(self, batch: list[Positioned]) -> list[Positioned]:
        """Store the raw responses; return those that count at their own position."""
        if not batch:
            return []
        try:
            await self._responses.insert_many([raw_document(item) for item in batch], ordered=False)
            return batch
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
        ids = [item.response.response_id for item in batch]
        stored = {
            document["_id"]: document["position"]
            async for document in self._responses.find({"_id": {"$in": ids}}, {"position": 1})
        }
        return [item for item in batch if stored.get(item.response.response_id) == item.position]

    async def apply(self, counted: list[Positioned]) -> None:
        """Add the counted responses to every aggregate they touch, each exactly once."""
        documents: defaultdict[str, list[Positioned]] = defaultdict(list)
        for item in counted:
            documents[survey_key(item.response.survey_id)].append(item)
        if counted:
            documents[OVERALL] = counted
        for key, items in documents.items():
            await self._apply_to(key, items)

    async def _apply_to(self, key: str, items: list[Positioned]) -> None:
        partitions = {item.partition for item in items}
        while True:
            current = await self._aggregates.find_one(
                {"_id": key}, {f"applied.p{p}": 1 for p in partitions}
            )
            marks: dict[str, int] = (current or {}).get("applied", {})
            fresh = [i for i in items if i.offset > marks.get(f"p{i.partition}", -1)]
            if not fresh:
                return
            delta = increments(item.response for item in fresh)[key]
            new_marks = {
                f"applied.p{p}": max(
                    marks.get(f"p{p}", -1), *(i.offset for i in items if i.partition == p)
                )
                for p in partitions
            }
            guard: dict[str, Any] = {"_id": key}
            for p in partitions:
                mark = marks.get(f"p{p}")
                guard[f"applied.p{p}"] = {"$exists": False} if mark is None else mark
            try:
                result = await self._aggregates.update_one(
                    guard,
                    {"$inc": dict(delta), "$set": new_marks},
                    upsert=current is None,
                )
            except DuplicateKeyError:
                continue  # another consumer created the document first: read it and retry
            if result.matched_count or result.upserted_id is not None:
                return

    async def aggregate(self, key: str) -> Document | None:
        """One aggregate document (`all` or `survey:<id>`)."""
        return await self._aggregates.find_one({"_id": key}, {"applied": 0})

    async def survey_totals(self) -> dict[str, int]:
        """Unique responses per survey."""
        overall = await self._aggregates.find_one({"_id": OVERALL}, {"surveys": 1})
        return dict((overall or {}).get("surveys", {}))

    async def raw_responses(self) -> Iterable[SurveyResponse]:
        """Every stored response (for recounts)."""
        return [from_raw_document(document) async for document in self._responses.find()]

    async def recount(self) -> dict[str, Counter[str]]:
        """The increments of every stored response, as a rebuild or a verify sees them."""
        return increments(await self.raw_responses())
