"""Group commit: what concurrent requests ask of one collection while a command is on its way goes
together in the next command, an `insert_many` of their documents or one `delete_many` of their
ids.

SQLite-backed servers (FerretDB) take one write lock per write command and scan a collection
once per command that filters, whatever the filter, so one command for 30 requests costs about
what one for a single request costs; alone, a request waits for no one (its batch is just
itself). Each request still learns its own outcome: an unordered `insert_many` reports a
duplicate `_id` per document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError, WriteError

from shared.mongo import Document

DUPLICATE_KEY = 11000
MAX_BATCH = 256

Request = TypeVar("Request")
Answer = TypeVar("Answer")
# Runs one batch: an answer or an exception for each request, in the order of the requests.
Run = Callable[[list[Request]], Awaitable[Sequence[Answer | BaseException]]]


class Batcher(Generic[Request, Answer]):
    """Runs the requests of concurrent callers in batches of at most `MAX_BATCH`, one batch at a
    time: those that arrive while a batch runs go together in the next one."""

    def __init__(self, run: Run[Request, Answer], name: str) -> None:
        self._run = run
        self._name = name
        self._waiting: list[tuple[Request, asyncio.Future[Answer]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, request: Request) -> Answer:
        """The answer to `request`, or its error, once the batch it went in has run."""
        done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)
        return await done

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                answers = await self._run([request for request, _ in batch])
            except Exception as exc:  # the server's, or a bug: each caller learns it, none hangs
                answers = [exc] * len(batch)
            for (_, done), answer in zip(batch, answers, strict=True):
                if done.done():  # its caller was cancelled
                    continue
                if isinstance(answer, BaseException):
                    done.set_exception(answer)
                else:
                    done.set_result(answer)


class InsertBatcher:
    """Inserts into one collection, batched across concurrent callers."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._batcher: Batcher[Document, None] = Batcher(self._insert_many, "insert-batcher")

    async def insert(self, document: Document) -> None:
        """Insert `document`; `DuplicateKeyError` if its `_id` exists, other errors as PyMongo's."""
        await self._batcher.submit(document)

    async def _insert_many(self, documents: list[Document]) -> list[BaseException | None]:
        errors: dict[int, BaseException] = {}
        try:
            await self._collection.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = {
                error["index"]: _error_of(error) for error in exc.details.get("writeErrors", [])
            }
            if exc.details.get("writeConcernErrors"):  # none of them is known to be durable
                errors = dict.fromkeys(range(len(documents)), exc)
        return [errors.get(index) for index in range(len(documents))]


class DeleteBatcher:
    """Deletes of documents by `_id` from one collection, batched across concurrent callers: one
    `delete_many` with `$in` serves them all (a server that scans for any filter scans once)."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._batcher: Batcher[str, None] = Batcher(self._delete_many, "delete-batcher")

    async def delete(self, key: str) -> None:
        """Delete the document whose `_id` is `key`, if there is one; PyMongo's errors as they
        come (the whole batch failed: none of its deletes is known to be done)."""
        await self._batcher.submit(key)

    async def _delete_many(self, keys: list[str]) -> list[None]:
        await self._collection.delete_many({"_id": {"$in": list(dict.fromkeys(keys))}})
        return [None] * len(keys)


def _error_of(error: dict[str, object]) -> PyMongoError:
    message = str(error.get("errmsg", "write error"))
    code = error.get("code")
    if code == DUPLICATE_KEY:
        return DuplicateKeyError(message, DUPLICATE_KEY, error)
    return WriteError(message, code if isinstance(code, int) else None, error)
