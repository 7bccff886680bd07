"""Claims: a unique key inserted once. The insert of a new `_id` is the one write that every
supported server (MongoDB 7/8 and FerretDB) makes atomic: a conditional update is not atomic on
FerretDB, where two replicas can both match the same filter and both write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.notifier.bulk import insert_each
from shared.mongo import Document

CLAIMS = "notifier_claims"


class Claims:
    """Keys that only one caller can take, ever."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._claims = db[CLAIMS]

    async def take(self, key: str, now: datetime) -> bool:
        """True for the one caller that took `key` first; False for everyone else."""
        try:
            await self._claims.insert_one({"_id": key, "at": now})
        except DuplicateKeyError:
            return False
        return True

    async def take_many(self, keys: Sequence[str], now: datetime) -> set[str]:
        """The keys of `keys` this caller took first, in one insert of them all."""
        inserted = await insert_each(self._claims, [{"_id": key, "at": now} for key in keys])
        if inserted.refused:  # a claim is a key and a time: never the document's own fault
            raise next(iter(inserted.refused.values()))
        return {key for n, key in enumerate(keys) if n not in inserted.duplicates}

    async def taken_at(self, key: str) -> datetime | None:
        """When `key` was taken, if it was."""
        document = await self._claims.find_one({"_id": key})
        return document["at"] if document else None
