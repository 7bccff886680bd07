"""Group-committed inserts and deletes by id: each caller learns the fate of its own request."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, BulkWriteError, DuplicateKeyError, WriteError

from services.intake.batching import DeleteBatcher, InsertBatcher
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


class FakeDeletes:
    """Records each `delete_many` by `$in`, as a server would take it."""

    def __init__(self, failure: BaseException | None = None) -> None:
        self.deletes: list[list[str]] = []
        self.failure = failure

    async def delete_many(self, filter: Document) -> None:
        self.deletes.append(filter["_id"]["$in"])
        await asyncio.sleep(0.01)
        if self.failure is not None:
            raise self.failure


def deleting(deletes: FakeDeletes) -> DeleteBatcher:
    return DeleteBatcher(cast(AsyncCollection[Document], deletes))


async def test_delete_concurrent_one_command_each_id_once() -> None:
    deletes = FakeDeletes()
    batcher = deleting(deletes)

    await asyncio.gather(*(batcher.delete(key) for key in ["a", "b", "c", "a"]))

    assert deletes.deletes == [["a", "b", "c"]]


async def test_delete_server_error_fails_every_caller_of_the_batch() -> None:
    batcher = deleting(FakeDeletes(failure=AutoReconnect("gone")))

    outcomes = await asyncio.gather(*(batcher.delete(key) for key in "xyz"), return_exceptions=True)

    assert all(isinstance(outcome, AutoReconnect) for outcome in outcomes)


async def test_delete_later_callers_go_in_the_next_command() -> None:
    deletes = FakeDeletes()
    batcher = deleting(deletes)

    first = asyncio.ensure_future(batcher.delete("a"))
    await asyncio.sleep(0.001)  # the first command is on its way
    await asyncio.gather(batcher.delete("b"), batcher.delete("c"))
    await first

    assert deletes.deletes == [["a"], ["b", "c"]]
