"""services.notifier.registry: `register` of a new address (one insert, no guarded update),
`reindex` (used by `rekey`) and `matching` (the benchmark's baseline) on typed focal-point
records, over a small in-memory fake of the collections (the real server:
tests/integration/test_erasure_records.py's rekey test, test_notifier_first_record.py,
`make bench-notifier`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, cast

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.notifier.matching import IndexEntry, bucket_of, decode_bucket
from services.notifier.records import first_record
from services.notifier.registry import (
    FOCAL_POINTS,
    MATCH_INDEX,
    Registry,
    first_document,
    record_of,
)
from shared.events import SurveyResponse
from shared.mongo import Document
from shared.personal import EmailKeys

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
STORED: Document = {
    "_id": "key-1",
    "email": "an@example.org",
    "language": "fr",
    "consent": True,
    "unsubscribed": False,
    "country": "SN",
    "codes": ["housing", "sdg-13"],
    "submitted_at": NOW,
    "revision": 3,
    "legacy_field": "kept by rekey, unknown to the record",
}


class Collection:
    """What the registry's writes and `matching` use: lookups and writes by `_id` (one by one
    or many at once), and a `find` that answers the documents it holds and remembers the filter
    it was given."""

    def __init__(self) -> None:
        self.documents: dict[Any, Document] = {}
        self.filters: list[dict[str, Any]] = []

    async def find_one(self, query: dict[str, Any]) -> Document | None:
        return self.documents.get(query["_id"])

    async def insert_one(self, document: Document) -> None:
        if document["_id"] in self.documents:
            raise DuplicateKeyError("taken")
        self.documents[document["_id"]] = dict(document)

    async def insert_many(self, documents: list[Document], ordered: bool = True) -> None:
        taken = []
        for index, document in enumerate(documents):
            try:
                await self.insert_one(document)
            except DuplicateKeyError:
                taken.append({"index": index, "code": 11000, "errmsg": "taken"})
        if taken:
            raise BulkWriteError({"writeErrors": taken})

    async def bulk_write(self, requests: list[UpdateOne], ordered: bool = True) -> None:
        for request in requests:
            await self.update_one(request._filter, request._doc, upsert=bool(request._upsert))

    async def update_one(
        self, query: dict[str, Any], update: dict[str, Any], upsert: bool = False
    ) -> None:
        assert set(update) == {"$set"} and set(query) == {"_id"}
        if query["_id"] in self.documents or upsert:
            found = self.documents.setdefault(query["_id"], {"_id": query["_id"]})
            found.update(update["$set"])

    def find(self, query: dict[str, Any]) -> AsyncIterator[Document]:
        self.filters.append(query)

        async def documents() -> AsyncIterator[Document]:
            for document in list(self.documents.values()):
                yield document

        return documents()


class Database(dict[str, Collection]):
    """Collections by name, created on first use."""

    def __missing__(self, name: str) -> Collection:
        self[name] = Collection()
        return self[name]


def registry(db: Database) -> Registry:
    return Registry(
        cast(AsyncDatabase[Document], db), EmailKeys("secret"), require_confirmation=False
    )


def indexed(db: Database, email_key: str) -> IndexEntry | None:
    bucket = db[MATCH_INDEX].documents.get(f"bucket-{bucket_of(email_key)}")
    return decode_bucket(bucket["data"]).get(email_key) if bucket else None


async def test_reindex_typed_record_copied_into_match_index() -> None:
    db = Database()

    await registry(db).reindex(record_of(STORED))

    assert indexed(db, "key-1") == IndexEntry("key-1", 3, "SN", ("housing", "sdg-13"))


async def test_reindex_older_revision_leaves_newer_copy() -> None:
    db = Database()
    newer = record_of(STORED | {"revision": 5, "codes": ["housing"]})
    await registry(db).reindex(newer)

    await registry(db).reindex(record_of(STORED))

    assert indexed(db, "key-1") == IndexEntry("key-1", 5, "SN", ("housing",))


async def test_reindex_unsubscribed_record_indexed_without_codes() -> None:
    db = Database()

    await registry(db).reindex(record_of(STORED | {"unsubscribed": True, "revision": 4}))

    assert indexed(db, "key-1") == IndexEntry("key-1", 4, "SN", ())


async def test_matching_query_passed_typed_records_returned() -> None:
    db = Database()
    other = STORED | {"_id": "key-2", "email": "bo@example.org", "revision": 1}
    for document in (STORED, other):
        await db[FOCAL_POINTS].insert_one(document)
    query = {"codes": {"$in": ["housing"]}, "consent": True, "unsubscribed": False}

    found = [record async for record in registry(db).matching(query)]

    assert db[FOCAL_POINTS].filters == [query]
    assert found == [record_of(STORED), record_of(other)]
    assert [record.key for record in found] == ["key-1", "key-2"]


async def test_register_new_address_one_insert_no_guarded_update(
    make_event: Callable[..., SurveyResponse],
) -> None:
    db = Database()  # no `find_one_and_update`: the guarded update would fail here
    given = make_event()
    assert given.focal_point is not None
    key = registry(db).key(str(given.focal_point.email))

    record = await registry(db).register(given)

    assert record == first_record(key, given, None)
    assert db[FOCAL_POINTS].documents == {key: first_document(record)}
    assert (record.revision, record.unsubscribed, record.withheld_at) == (1, False, None)
    assert indexed(db, key) == IndexEntry(key, 1, record.country, record.survey_codes)


async def test_register_new_unconfirmed_address_no_bucket_written_until_it_has_codes(
    make_event: Callable[..., SurveyResponse],
) -> None:
    db = Database()
    confirming = Registry(cast(AsyncDatabase[Document], db), EmailKeys("secret"))
    given = make_event()

    record = await confirming.register(given)
    assert record is not None
    before = dict(db[MATCH_INDEX].documents)
    # The same first revision, not from an insert of this call (a record was there): copied.
    await confirming.reindex(record)

    assert record.revision == 1 and record.confirmed_at is None
    assert before == {}
    assert indexed(db, record.key) == IndexEntry(record.key, 1, record.country, ())
