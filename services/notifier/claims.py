"""Claims: a unique key inserted once. The insert of a new `_id` is the one write that every
supported server (MongoDB 7/8 and FerretDB) makes atomic: a conditional update is not atomic on
FerretDB, where two replicas can both match the same filter and both write.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

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

    async def taken_at(self, key: str) -> datetime | None:
        """When `key` was taken, if it was."""
        document = await self._claims.find_one({"_id": key})
        return document["at"] if document else None
