"""Group commit: what concurrent requests ask of one collection while a command is on its way goes
together in the next command, an `insert_many` of their documents or one `find` of their ids.

SQLite-backed servers (FerretDB) take one write lock per write command and scan a collection
once per read command whatever its filter, so one command for 30 requests costs about what one
for a single request costs; alone, a request waits for no one (its batch is just itself). Each
request still learns its own outcome: an unordered `insert_many` reports a duplicate `_id` per
document, and a `find` by `$in` answers each id with its own document or none.
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


class FindBatcher:
    """Reads of documents by `_id` from one collection, batched across concurrent callers: one
    `find` with `$in` answers them all."""

    def __init__(self, collection: AsyncCollection[Document], projection: Sequence[str]) -> None:
        self._collection = collection
        self._projection = list(projection)
        self._batcher: Batcher[str, Document | None] = Batcher(self._find, "find-batcher")

    async def find(self, key: str) -> Document | None:
        """The document whose `_id` is `key` (the fields of the projection), None if there is
        none; PyMongo's errors as they come."""
        return await self._batcher.submit(key)

    async def _find(self, keys: list[str]) -> list[Document | None]:
        wanted = list(dict.fromkeys(keys))
        # At most one document per id: with the limit, the first batch is the last (no getMore).
        cursor = self._collection.find(
            {"_id": {"$in": wanted}}, self._projection, limit=len(wanted), batch_size=len(wanted)
        )
        found = {document["_id"]: document async for document in cursor}
        return [found.get(key) for key in keys]


def _error_of(error: dict[str, object]) -> PyMongoError:
    message = str(error.get("errmsg", "write error"))
    code = error.get("code")
    if code == DUPLICATE_KEY:
        return DuplicateKeyError(message, DUPLICATE_KEY, error)
    return WriteError(message, code if isinstance(code, int) else None, error)
