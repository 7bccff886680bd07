"""The newest revision the intake accepted of each revised response (the only I/O here).

A revision's own claim (`revision_claim_key`) makes a second delivery of it a duplicate; this
small document per response, written only once a revision above 1 was published, answers
`superseded` to a lower revision that arrives later, without a scan: one read by `_id` of a
collection that holds only the revised responses (a response never revised has no document, so
its first revision costs a read that finds nothing). The reads of concurrent requests go
together in one `find` by `$in` (`FindBatcher`): a server that scans the collection for any
filter (FerretDB) then scans it once for all of them.

The document is raised with `$max`, which servers without atomic updates (FerretDB) may apply
out of order when two revisions of one response are accepted at the same moment: it may then
lag behind, never run ahead. So it is a hint: a late older revision it lets through is published,
and analytics, which orders revisions itself, never lets it replace a newer one.
"""

from __future__ import annotations

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from services.intake.batching import FindBatcher
from shared.mongo import Document

REVISION = "revision"


def revision_claim_key(identity: str, revision: int) -> str:
    """The claim of one revision of a response. Revision 1 keeps the key claims had before
    revisions existed, so a response accepted then is a duplicate of its revision 1."""
    return identity if revision == 1 else f"{identity}#r{revision}"


class RevisionStore:
    """The newest accepted revision of each response revised at least once."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._reads = FindBatcher(collection, [REVISION])

    async def newest(self, identity: str) -> int:
        """The newest revision accepted of `identity` as far as known (1 when never revised)."""
        found = await self._reads.find(identity)
        return int(found[REVISION]) if found else 1

    async def accepted(self, identity: str, revision: int) -> None:
        """Revision `revision` of `identity` was published."""
        if revision <= 1:
            return
        for _ in range(2):  # two first upserts of one `_id` race: the loser updates
            try:
                await self._collection.update_one(
                    {"_id": identity}, {"$max": {REVISION: revision}}, upsert=True
                )
                return
            except DuplicateKeyError:
                continue
