"""Writing the match index (`matching`): typed focal-point records copied into their buckets.

The records are the truth; the index is derived from them. A copy never replaces a newer
revision of an entry, and each version of a bucket is written only by the one writer that
claimed it (`claims`, an insert: atomic on every server), on top of the version before, so
replicas writing at once lose nothing, with or without transactions. A writer that died between
its claim and its write is passed over after `INDEX_CLAIM_TIMEOUT` (its event is read again).

A batch of records costs one read of the buckets it touches, one insert of their claims and a
bulk write of the claimed versions (at most 256 buckets: a few commands), whatever its size: a
server that scans for every `_id` (FerretDB) pays per command, not per record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.notifier import consent
from services.notifier.claims import Claims
from services.notifier.matching import IndexEntry, bucket_of, decode_bucket, encode_bucket
from services.notifier.records import FocalPoint
from shared.mongo import Document

MATCH_INDEX = "notifier_match_index"
# Far longer than one bucket write takes: only a writer that died is passed over.
INDEX_CLAIM_TIMEOUT = timedelta(seconds=30)
# Bucket writes per command: FerretDB 1.24 stalls on an update command of a hundred or more.
WRITES_PER_COMMAND = 50
CLAIM_RETRY_PAUSE_SECONDS = 0.005  # the winner is writing: read its version next


FIRST_REVISION = 1


def entry_of(record: FocalPoint, *, require_confirmation: bool) -> IndexEntry:
    """The index entry of `record`: its codes while pilots may go to them, none otherwise."""
    active = consent.receives_pilots(record, require_confirmation=require_confirmation)
    return IndexEntry(
        record.key, record.revision, record.country, tuple(consent.codes(record)) if active else ()
    )


def bucket_id(email_key: str) -> str:
    """The `_id` of the bucket document an email key lives in."""
    return f"bucket-{bucket_of(email_key)}"


def wanted_by_bucket(entries: Iterable[IndexEntry]) -> dict[str, dict[str, IndexEntry]]:
    """The entries by bucket id and email key, the highest revision of each key."""
    wanted: dict[str, dict[str, IndexEntry]] = {}
    for entry in entries:
        bucket = wanted.setdefault(bucket_id(entry.email_key), {})
        current = bucket.get(entry.email_key)
        if current is None or current.revision < entry.revision:
            bucket[entry.email_key] = entry
    return wanted


def merged(stored: dict[str, IndexEntry], wanted: dict[str, IndexEntry]) -> bool:
    """Put `wanted` into `stored` where it is newer than what is there; whether any was."""
    changed = False
    for email_key, entry in wanted.items():
        current = stored.get(email_key)
        if current is None or current.revision < entry.revision:
            stored[email_key] = entry
            changed = True
    return changed


class MatchIndex:
    """The match index's buckets and the claims on their versions."""

    def __init__(self, db: AsyncDatabase[Document], *, require_confirmation: bool) -> None:
        self._index = db[MATCH_INDEX]
        self._claims = Claims(db)
        self._require_confirmation = require_confirmation

    async def copy(self, records: Iterable[FocalPoint], fresh: Collection[str] = ()) -> None:
        """Copy `records` into the index unless a newer copy of each is there: once per bucket
        touched, however many of them share it.

        `fresh`: keys whose record was just made by an insert (there was none, so neither an
        entry). Such a record's first revision without codes (an address not confirmed yet, a
        first response that is withheld or withdraws) needs no entry: it matches nothing, and
        no older revision exists whose copy could land later. Leaving it out spares a
        campaign's new addresses every bucket write until they confirm."""
        entries = (entry_of(r, require_confirmation=self._require_confirmation) for r in records)
        pending = wanted_by_bucket(
            e
            for e in entries
            if e.codes or e.revision != FIRST_REVISION or e.email_key not in fresh
        )
        while pending:
            found = self._index.find({"_id": {"$in": sorted(pending)}})
            stored = {str(bucket["_id"]): bucket async for bucket in found}
            versions: dict[str, tuple[int, bytes]] = {}
            for bucket, wanted in pending.items():
                document = stored.get(bucket)
                entries_now = decode_bucket(document["data"]) if document else {}
                if merged(entries_now, wanted):
                    version = int(document["version"]) if document else 0
                    versions[bucket] = (version, encode_bucket(entries_now))
            now = datetime.now(UTC)
            # Each version of a bucket is written by the one writer that claimed it.
            taken = await self._claims.take_many(
                [f"{b}@{v + 1}" for b, (v, _) in versions.items()], now
            )
            writes = [
                UpdateOne({"_id": b}, {"$set": {"data": data, "version": v + 1}}, upsert=True)
                for b, (v, data) in versions.items()
                if f"{b}@{v + 1}" in taken
            ]
            for start in range(0, len(writes), WRITES_PER_COMMAND):
                await self._index.bulk_write(
                    writes[start : start + WRITES_PER_COMMAND], ordered=False
                )
            lost = {b: v for b, (v, _) in versions.items() if f"{b}@{v + 1}" not in taken}
            pending = {b: pending[b] for b in lost}
            if pending:
                for bucket, version in lost.items():
                    await self._skip_if_abandoned(bucket, version, now)
                await asyncio.sleep(CLAIM_RETRY_PAUSE_SECONDS)

    async def _skip_if_abandoned(self, bucket: str, version: int, now: datetime) -> None:
        # A writer that died between its claim and its write would block the bucket: after a
        # while the next version is declared without its change (its event is read again).
        taken_at = await self._claims.taken_at(f"{bucket}@{version + 1}")
        if taken_at is not None and taken_at + INDEX_CLAIM_TIMEOUT < now:
            await self._index.update_one(
                {"_id": bucket, "version": version},
                {"$set": {"version": version + 1}, "$setOnInsert": {"data": ""}},
                upsert=version == 0,
            )
