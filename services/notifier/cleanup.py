"""Dropping claims (`notifier_claims`) that can no longer decide anything.

A claim only settles a race for one step: attempt `n` of a delivery (`<delivery id>#<n>`) or
version `v` of a match-index bucket (`bucket-<i>@<v>`). Dropping one is safe once no caller can
ask for that key again, which holds when both are true:

- the step is behind the record for good: the delivery is `sent`, `failed` or `suppressed` and
  `n` is at most its `attempts` (no attempt of a finished delivery is claimed again: it is never
  due), or the bucket's `version` is already past `v`;
- the claim is older than the retention, far longer than a dispatcher keeps a candidate it read
  before claiming it (seconds) or a writer keeps a bucket it read (milliseconds). A caller holding
  a copy that stale is the one case a dropped claim could let through, and the delivery claim
  re-checks the record as well (`Deliveries._take`).

Replays need no claim: a replayed or redelivered pilot creates no second delivery because the
delivery's `_id` is the (pilot, focal point) pair and the delivery records are kept for good. They
are the durable record of what was sent; only the claims, which repeat what those records say, go.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from services.notifier.claims import CLAIMS
from services.notifier.deliveries import DELIVERIES
from services.notifier.registry import MATCH_INDEX
from shared.mongo import Document

FINAL_STATES = ("sent", "failed", "suppressed")
DROP_BATCH = 500


async def prune_claims(db: AsyncDatabase[Document], retention: timedelta, now: datetime) -> int:
    """Delete the claims older than `retention` whose step is settled for good; their count."""
    claims, dropped = db[CLAIMS], 0
    old = claims.find({"at": {"$lt": now - retention}}, {"_id": True}).batch_size(DROP_BATCH)
    batch: list[str] = []
    async for claim in old:
        batch.append(str(claim["_id"]))
        if len(batch) == DROP_BATCH:
            dropped += await _drop_settled(db, batch)
            batch = []
    if batch:
        dropped += await _drop_settled(db, batch)
    return dropped


async def _drop_settled(db: AsyncDatabase[Document], keys: list[str]) -> int:
    settled = await _settled_deliveries(db, keys) + await _settled_buckets(db, keys)
    if not settled:
        return 0
    result = await db[CLAIMS].delete_many({"_id": {"$in": settled}})
    return result.deleted_count


async def _settled_deliveries(db: AsyncDatabase[Document], keys: Iterable[str]) -> list[str]:
    attempts = _split(keys, "#")
    finished = db[DELIVERIES].find(
        {"_id": {"$in": list(attempts)}, "state": {"$in": list(FINAL_STATES)}},
        {"attempts": True},
    )
    # Every attempt up to the last one of a finished delivery is settled.
    done = {str(d["_id"]): int(d["attempts"]) async for d in finished}
    return _join(attempts, done, "#")


async def _settled_buckets(db: AsyncDatabase[Document], keys: Iterable[str]) -> list[str]:
    versions = _split((key for key in keys if key.startswith("bucket-")), "@")
    current = db[MATCH_INDEX].find({"_id": {"$in": list(versions)}}, {"version": True})
    # The latest version's claim stays: a writer of the next one reads that version first.
    past = {str(b["_id"]): int(b["version"]) - 1 async for b in current}
    return _join(versions, past, "@")


def _split(keys: Iterable[str], separator: str) -> dict[str, list[int]]:
    """`{"<record>": [numbers]}` from claim keys `<record><separator><number>`."""
    parts: dict[str, list[int]] = {}
    for key in keys:
        record, found, number = key.rpartition(separator)
        if found and number.isdigit():
            parts.setdefault(record, []).append(int(number))
    return parts


def _join(parts: dict[str, list[int]], highest: dict[str, int], separator: str) -> list[str]:
    """The claim keys of `parts` numbered at most `highest` of their record."""
    return [
        f"{record}{separator}{number}"
        for record, numbers in parts.items()
        if record in highest
        for number in numbers
        if number <= highest[record]
    ]
