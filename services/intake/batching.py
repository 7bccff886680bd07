"""Group commit of inserts: the inserts that concurrent requests ask for while one `insert_many`
is on its way go together in the next one.

SQLite-backed servers (FerretDB) take one write lock per write command, so one insert of 30
documents costs about what one insert of a single document costs; alone, a request waits for no
one (its batch is just itself). Each document still succeeds or fails on its own: an unordered
`insert_many` reports a duplicate `_id` per document, and so does `insert`.
"""

from __future__ import annotations

import asyncio

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError, WriteError

from shared.mongo import Document

DUPLICATE_KEY = 11000
MAX_BATCH = 256


class InsertBatcher:
    """Inserts into one collection, batched across concurrent callers."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._waiting: list[tuple[Document, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def insert(self, document: Document) -> None:
        """Insert `document`; `DuplicateKeyError` if its `_id` exists, other errors as PyMongo's."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((document, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="insert-batcher")
        await done

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            errors: dict[int, BaseException] = {}
            try:
                await self._collection.insert_many([doc for doc, _ in batch], ordered=False)
            except BulkWriteError as exc:
                errors = {
                    error["index"]: _error_of(error) for error in exc.details.get("writeErrors", [])
                }
                if exc.details.get("writeConcernErrors"):  # none of them is known to be durable
                    errors = dict.fromkeys(range(len(batch)), exc)
            except PyMongoError as exc:
                errors = dict.fromkeys(range(len(batch)), exc)
            for index, (_, done) in enumerate(batch):
                if done.done():  # its caller was cancelled
                    continue
                if index in errors:
                    done.set_exception(errors[index])
                else:
                    done.set_result(None)


def _error_of(error: dict[str, object]) -> PyMongoError:
    message = str(error.get("errmsg", "write error"))
    code = error.get("code")
    if code == DUPLICATE_KEY:
        return DuplicateKeyError(message, DUPLICATE_KEY, error)
    return WriteError(message, code if isinstance(code, int) else None, error)
