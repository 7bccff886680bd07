"""Group-committed inserts and reads by id: each caller learns the fate of its own request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, BulkWriteError, DuplicateKeyError, WriteError

from services.intake.batching import FindBatcher, InsertBatcher
from services.intake.revisions import RevisionStore
from shared.mongo import Document


class FakeCollection:
    """Records each `insert_many`; refuses documents as a server would."""

    def __init__(self, failure: BaseException | None = None) -> None:
        self.batches: list[list[Document]] = []
        self.failure = failure

    async def insert_many(self, documents: list[Document], ordered: bool) -> None:
        assert ordered is False
        self.batches.append(documents)
        await asyncio.sleep(0.01)
        if self.failure is not None:
            raise self.failure
        errors = [
            {"index": index, "code": 11000 if doc["_id"] == "taken" else 121, "errmsg": "no"}
            for index, doc in enumerate(documents)
            if doc["_id"] in ("taken", "invalid")
        ]
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nInserted": len(documents) - len(errors)})


def batcher(collection: FakeCollection) -> InsertBatcher:
    return InsertBatcher(cast(AsyncCollection[Document], collection))


async def test_insert_concurrent_batched_each_own_outcome() -> None:
    collection = FakeCollection()
    inserts = batcher(collection)
    ids = ["a", "b", "taken", "c", "invalid", "d"]

    outcomes: list[Any] = await asyncio.gather(
        *(inserts.insert({"_id": key}) for key in ids), return_exceptions=True
    )

    assert [len(batch) for batch in collection.batches] == [6]  # all asked before it went
    assert [type(outcome) for outcome in outcomes] == [
        type(None),
        type(None),
        DuplicateKeyError,
        type(None),
        WriteError,
        type(None),
    ]


async def test_insert_server_error_fails_whole_batch() -> None:
    inserts = batcher(FakeCollection(failure=AutoReconnect("gone")))

    outcomes = await asyncio.gather(
        *(inserts.insert({"_id": key}) for key in "xyz"), return_exceptions=True
    )

    assert all(isinstance(outcome, AutoReconnect) for outcome in outcomes)


async def test_insert_write_concern_error_fails_every_document() -> None:
    refused = BulkWriteError({"writeErrors": [], "writeConcernErrors": [{"code": 64}]})
    inserts = batcher(FakeCollection(failure=refused))

    with pytest.raises(BulkWriteError):
        await inserts.insert({"_id": "x"})


class FakeReads:
    """Records each `find`; holds documents by `_id`, answers `$in` as a server would."""

    def __init__(self, documents: list[Document], failure: BaseException | None = None) -> None:
        self.documents = {document["_id"]: document for document in documents}
        self.finds: list[list[str]] = []
        self.failure = failure

    def find(
        self, filter: Document, projection: list[str], limit: int, batch_size: int
    ) -> AsyncIterator[Document]:
        keys = filter["_id"]["$in"]
        assert len(keys) == len(set(keys)) == limit <= batch_size
        self.finds.append(keys)
        return self._answer(keys, projection)

    async def _answer(self, keys: list[str], projection: list[str]) -> AsyncIterator[Document]:
        await asyncio.sleep(0.01)
        if self.failure is not None:
            raise self.failure
        for key in keys:
            if key in self.documents:
                document = self.documents[key]
                yield {"_id": key} | {name: document[name] for name in projection}


def collection_of(reads: FakeReads) -> AsyncCollection[Document]:
    return cast(AsyncCollection[Document], reads)


async def test_find_concurrent_one_command_each_own_document() -> None:
    reads = FakeReads([{"_id": "a", "revision": 3, "other": 1}, {"_id": "c", "revision": 2}])
    finds = FindBatcher(collection_of(reads), ["revision"])

    found = await asyncio.gather(*(finds.find(key) for key in ["a", "b", "c", "a"]))

    assert reads.finds == [["a", "b", "c"]]  # one command, each id asked once
    assert found == [{"_id": "a", "revision": 3}, None, {"_id": "c", "revision": 2}, found[0]]


async def test_find_server_error_fails_every_caller_of_the_batch() -> None:
    finds = FindBatcher(collection_of(FakeReads([], failure=AutoReconnect("gone"))), ["revision"])

    outcomes = await asyncio.gather(*(finds.find(key) for key in "xyz"), return_exceptions=True)

    assert all(isinstance(outcome, AutoReconnect) for outcome in outcomes)


async def test_find_later_callers_go_in_the_next_command() -> None:
    reads = FakeReads([{"_id": "b", "revision": 2}])
    finds = FindBatcher(collection_of(reads), ["revision"])

    first = asyncio.ensure_future(finds.find("a"))
    await asyncio.sleep(0.001)  # the first command is on its way
    rest = await asyncio.gather(finds.find("b"), finds.find("c"))

    assert await first is None
    assert rest == [{"_id": "b", "revision": 2}, None]
    assert reads.finds == [["a"], ["b", "c"]]


async def test_newest_concurrent_revisions_read_in_one_command() -> None:
    reads = FakeReads([{"_id": "s/r1", "revision": 4}])
    revisions = RevisionStore(collection_of(reads))

    newest = await asyncio.gather(*(revisions.newest(f"s/r{n}") for n in range(1, 6)))

    assert newest == [4, 1, 1, 1, 1]
    assert len(reads.finds) == 1
