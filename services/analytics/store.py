"""The analytics MongoDB adapter; the only module that knows its collection names.

Exactly-once effect without transactions, from two single-document atomic steps:

1. Every response is stored raw under `_id = survey_id/response_id` (`SurveyResponse.identity`:
   one generic id may be used in two surveys) with the Kafka position (partition,
   offset) of the first message that carried it. A message *counts* only where its own position is
   the stored one: a duplicate elsewhere in the topic never counts, and a replay of the very same
   message still counts (in case the crash came before step 2).
2. Each aggregate document carries a watermark per partition: the last offset applied to it. Its
   increments are applied by compare-and-set on those watermarks, counting only offsets above them,
   so a batch applied twice, by a zombie or after a crash, adds nothing the second time.

The compare-and-set is an *insert*: an aggregate document is a chain of immutable versions
(`_id = "<key>#<version>"`), and a writer inserts version n+1 computed from version n. The unique
`_id` lets exactly one writer win; the others read the winner's version and try again on top of
it. A conditional `update` would not do: FerretDB evaluates its filter and writes the result in
two steps, so two concurrent writers can both pass the same guard and one increment is lost
(measured: 240 successful guarded updates left 70 increments). A head document (`_id = <key>`)
points readers at a recent version; old versions shrink to tombstones as new ones arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bson.errors import InvalidDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DocumentTooLarge, DuplicateKeyError

from services.analytics.aggregates import (
    OVERALL,
    document_increments,
    increments,
    survey_key,
)
from services.analytics.aggregates import Positioned as Positioned
from services.analytics.audit import (
    KEY,
    LATEST,
    VERSION,
    WATERMARKS,
    add_counters,
    counters_of,
    watermark_fields,
    watermarks,
)
from shared.events import TOLERANT, SurveyResponse
from shared.failures import Disposition, classify_write_error, unstorable
from shared.mongo import Document

RESPONSES = "analytics_responses"
AGGREGATES = "analytics_aggregates"
SUPERSEDED = "superseded"
# On FerretDB every read or write by `_id` scans the collection (it uses no index for them), so
# it pays to keep few whole versions (older ones are tombstones) and to move the head at every
# second version only: readers probe forward from it, so a head one version behind costs them a
# read that finds something, and it never points at a tombstone.
KEEP_VERSIONS = 2
HEAD_EVERY = 2


def version_id(key: str, version: int) -> str:
    """The `_id` of one version of an aggregate document; sorts by version."""
    return f"{key}#{version:012d}"


def responses_query(
    survey_id: str | None = None, country: str | None = None, respondent_type: str | None = None
) -> Document:
    """The filter of the stored responses of a survey, country and respondent type (each
    optional)."""
    query: Document = {}
    if survey_id is not None:
        query["survey_id"] = survey_id
    if country is not None:
        query["respondent.country"] = country
    if respondent_type is not None:
        query["respondent.type"] = respondent_type
    return query


def raw_document(item: Positioned) -> Document:
    """What is kept of a response: no focal-point name or email ever reaches analytics' data."""
    document = item.response.model_dump(mode="json", exclude={"focal_point"})
    document["_id"] = item.response.identity
    document["has_focal_point"] = item.response.focal_point is not None
    document["consenting_focal_point"] = item.response.consenting_focal_point is not None
    document["position"] = item.position
    return document


def from_raw_document(document: Document) -> SurveyResponse:
    """The response back from its raw document, for recounts."""
    fields = {key: value for key, value in document.items() if key not in ("_id", "position")}
    # Documents stored before the identity held the survey kept the response id as `_id`.
    # Read as the consumer read it: codes newer than this taxonomy stay counted under their code.
    return SurveyResponse.model_validate(
        {"response_id": document["_id"], **fields}, context=TOLERANT
    )


def positioned_from_raw(document: Document) -> Positioned:
    """The response and the position that counts for it, from its raw document."""
    position = document["position"]
    return Positioned(from_raw_document(document), position["partition"], position["offset"])


class StoreRefusedError(Exception):
    """The database refused a response for what it is (see `shared.failures`)."""


@dataclass(frozen=True)
class Recorded:
    """A batch of raw responses stored: what counts, and what the database refused."""

    counted: list[Positioned]
    refused: list[tuple[Positioned, str]]


class AnalyticsStore:
    """Raw responses and aggregate documents."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._responses = db[RESPONSES]
        self._aggregates = db[AGGREGATES]
        # The newest version of each document this process has seen: a starting point for
        # probing, so a steady writer reads one document per write.
        self._known: dict[str, tuple[int, Document]] = {}

    async def record(self, batch: list[Positioned]) -> list[Positioned]:
        """Store the raw responses; return those that count at their own position. Raises
        `StoreRefusedError` when the database refuses one (consumers use `record_each`)."""
        recorded = await self.record_each(batch)
        if recorded.refused:
            raise StoreRefusedError(recorded.refused[0][1])
        return recorded.counted

    async def record_each(self, batch: list[Positioned]) -> Recorded:
        """Store the raw responses, each on its own: those the database refuses for what they
        are (`shared.failures`) are left out and returned with the reason, the others are
        stored. Returns those that count at their own position.

        A refused response is never stored, so it never counts, and storing the same batch
        again refuses it again and counts the same others: the exactly-once design holds.
        A transient failure raises, for the whole batch to be read again."""
        if not batch:
            return Recorded([], [])
        documents = [raw_document(item) for item in batch]
        refused: dict[int, str] = {}
        try:
            errors = await self._insert_unordered(documents, list(range(len(documents))))
        except (InvalidDocument, DocumentTooLarge, OverflowError):
            # The driver refuses the whole batch before sending it: find the documents BSON
            # cannot carry, and store the others.
            refused = {
                i: why for i, document in enumerate(documents) if (why := unstorable(document))
            }
            if not refused:
                raise
            kept = [i for i in range(len(documents)) if i not in refused]
            errors = await self._insert_unordered([documents[i] for i in kept], kept)
        duplicates = False
        for index, error in errors:
            if classify_write_error(error) is Disposition.DEAD_LETTER:
                refused[index] = f"refused by the database: {error.get('errmsg', '')}"
            else:
                duplicates = True
        stored = [item for i, item in enumerate(batch) if i not in refused]
        out = [(batch[i], why) for i, why in sorted(refused.items())]
        if not duplicates:
            return Recorded(stored, out)
        ids = [item.response.identity for item in stored]
        positions = {
            document["_id"]: document["position"]
            async for document in self._responses.find({"_id": {"$in": ids}}, {"position": 1})
        }
        counted = [
            item for item in stored if positions.get(item.response.identity) == item.position
        ]
        return Recorded(counted, out)

    async def _insert_unordered(
        self, documents: list[Document], indexes: list[int]
    ) -> list[tuple[int, dict[str, Any]]]:
        """Insert every document that can be; the write errors of the others, by batch index
        (`indexes[i]` is the batch index of `documents[i]`). Raises on a transient failure."""
        if not documents:
            return []
        try:
            await self._responses.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                classify_write_error(error) is Disposition.RETRY for error in errors
            ):
                raise
            return [(indexes[error["index"]], error) for error in errors]
        return []

    async def apply(self, counted: list[Positioned]) -> None:
        """Add the counted responses to every aggregate they touch, each exactly once."""
        documents: defaultdict[str, list[Positioned]] = defaultdict(list)
        for item in counted:
            documents[survey_key(item.response.survey_id)].append(item)
        # The surveys' documents side by side, the overall one last: everything at or below the
        # overall watermarks is then in every document (the boundary `rebuild` relies on).
        await asyncio.gather(*(self._apply_to(key, items) for key, items in documents.items()))
        if counted:
            await self._apply_to(OVERALL, counted)

    async def _apply_to(self, key: str, items: list[Positioned]) -> None:
        partitions = {item.partition for item in items}
        # Straight on top of the version this process wrote or read last: the insert itself
        # tells whether it is still the newest, which saves a read per document and batch
        # whenever no other consumer wrote in between (a read that misses costs a scan).
        cached = self._known.get(key)
        version, current = cached or await self._latest(key)
        while True:
            marks = watermarks(current)
            fresh = [i for i in items if i.offset > marks.get(i.partition, -1)]
            if not fresh and cached is None:
                return
            if fresh:
                for p in partitions:
                    offsets = (i.offset for i in items if i.partition == p)
                    marks[p] = max(marks.get(p, -1), *offsets)
                counters = add_counters(counters_of(current), document_increments(key, fresh))
                if await self._insert_version(key, version + 1, counters, marks):
                    return
            # Another consumer wrote that version first, or, when nothing looked fresh in the
            # version known here, a rebuild may have lowered the watermarks since: read the
            # newest version and decide again on top of it.
            cached = None
            version, current = await self._latest(key)

    async def _insert_version(
        self, key: str, version: int, counters: Document, marks: Mapping[int, int]
    ) -> bool:
        """The compare-and-set: insert the next version, or learn that someone else did."""
        document = {
            **counters,
            "_id": version_id(key, version),
            KEY: key,
            VERSION: version,
            WATERMARKS: watermark_fields(marks),
        }
        try:
            await self._aggregates.insert_one(document)
        except DuplicateKeyError:
            return False
        self._known[key] = (version, document)
        if version == 1 or version % HEAD_EVERY == 0:
            # The head is a hint for readers (`$max` may lose a race on servers without atomic
            # updates; readers probe forward from it, so it may lag but never misleads).
            with contextlib.suppress(DuplicateKeyError):
                await self._aggregates.update_one(
                    {"_id": key}, {"$max": {LATEST: version}}, upsert=True
                )
        if version > KEEP_VERSIONS:
            # An old version shrinks to a tombstone but is never deleted: a slow writer still
            # trying to insert the version after an old one must fail, not fork the chain.
            old = version - KEEP_VERSIONS
            await self._aggregates.replace_one(
                {"_id": version_id(key, old)}, {KEY: key, VERSION: old, SUPERSEDED: True}
            )
        return True

    async def _latest(self, key: str) -> tuple[int, Document | None]:
        """The newest version of an aggregate document (0, None when it has none).

        Starts from the version this process saw last (versions never change, so it is still
        right about that version), else from the head, and probes forward by `_id`."""
        version, document = self._known.get(key) or await self._from_head(key)
        while True:
            newer = await self._aggregates.find_one({"_id": version_id(key, version + 1)})
            if newer is None:
                break
            if newer.get(SUPERSEDED):  # far behind: jump to a recent version
                version, document = await self._from_head(key)
                continue
            version, document = version + 1, newer
        if document is not None:
            self._known[key] = (version, document)
        return version, document

    async def _from_head(self, key: str) -> tuple[int, Document | None]:
        head = await self._aggregates.find_one({"_id": key})
        if head is not None and LATEST not in head:
            return 0, head  # a document of the single-document format: version 0 of its chain
        version = int(head[LATEST]) if head else 0
        if not version:
            return 0, None
        document = await self._aggregates.find_one({"_id": version_id(key, version)})
        if document is None or document.get(SUPERSEDED):
            # The head lagged behind the superseded versions: one scan finds the newest.
            document = await self._aggregates.find_one(
                {KEY: key, SUPERSEDED: {"$exists": False}}, sort=[(VERSION, -1)]
            )
            version = int(document[VERSION]) if document else 0
        return version, document

    async def newest(self, key: str) -> Document | None:
        """The newest version of one aggregate document, watermarks included."""
        _, document = await self._latest(key)
        return document

    async def aggregate(self, key: str) -> Document | None:
        """One aggregate document (`all` or `survey:<id>`): its counters, under `_id` = key."""
        _, document = await self._latest(key)
        return None if document is None else {"_id": key, **counters_of(document)}

    async def survey_documents(self, known: Iterable[str]) -> dict[str, Document]:
        """The newest version of every survey's aggregate document, read side by side, by key:
        those of `known` (survey keys) and of every survey the overall document counts."""
        # Not a `distinct` over the heads: a filter on anything but `_id` makes FerretDB decode
        # every document of the collection.
        _, overall = await self._latest(OVERALL)
        counted = (survey_key(survey_id) for survey_id in (overall or {}).get("surveys", {}))
        keys = sorted({*known, *counted})
        found = await asyncio.gather(*(self._latest(key) for key in keys))
        return {key: document for key, (_, document) in zip(keys, found, strict=True) if document}

    async def aggregates(self) -> dict[str, Document]:
        """The newest version of every aggregate document, watermarks included, by key."""
        keys = await self._aggregates.distinct("_id", {KEY: {"$exists": False}})  # the heads
        latest: dict[str, Document] = {}
        for key in sorted(keys):
            _, document = await self._latest(key)
            if document is not None:
                latest[key] = document
        return latest

    async def positioned(self, query: Document | None = None) -> AsyncIterator[Positioned]:
        """The stored responses matching `query` with their counting positions, free text left
        out (recounts never need it)."""
        async for document in self._responses.find(query or {}, {"answers": 0}):
            yield positioned_from_raw(document)

    async def raw_documents(self, query: Document, fields: list[str]) -> AsyncIterator[Document]:
        """Only `fields` (and `position`) of the stored responses matching `query`."""
        projection = {"_id": 0, "position": 1, **dict.fromkeys(fields, 1)}
        async for document in self._responses.find(query, projection):
            yield document

    async def replace_aggregates(self, documents: Mapping[str, Document]) -> None:
        """Make `documents` (key -> counters and watermarks) the newest version of each."""
        for key, content in documents.items():
            counters, marks = counters_of(content), watermarks(content)
            while True:
                version, _ = await self._latest(key)
                if await self._insert_version(key, version + 1, counters, marks):
                    break

    async def raw_responses(self) -> Iterable[SurveyResponse]:
        """Every stored response (for recounts)."""
        return [from_raw_document(document) async for document in self._responses.find()]

    async def recount(self) -> dict[str, Counter[str]]:
        """The increments of every stored response, as a rebuild or a verify sees them."""
        return increments(await self.raw_responses())
