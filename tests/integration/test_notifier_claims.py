"""Claim cleanup against the real MongoDB-wire server: only settled claims go, and a dropped
claim never lets a delivery out twice (replayed pilot, or a dispatcher holding a stale read)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.notifier.claims import CLAIMS
from services.notifier.cleanup import prune_claims
from services.notifier.deliveries import DELIVERIES, Deliveries, delivery_id
from services.notifier.registry import MATCH_INDEX
from shared import mongo
from shared.mongo import Document
from tests.support import Stack

pytestmark = pytest.mark.integration
LEASE = timedelta(seconds=60)
RETENTION = timedelta(days=30)
LATER = timedelta(days=31)  # every claim made by the test is older than the retention then


@pytest.fixture
async def db(stack: Stack, run_id: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client = mongo.new_client(stack.mongodb_url)
    yield mongo.database(client, f"test_{run_id}")
    await client.close()


async def claim_keys(db: AsyncDatabase[Document]) -> set[str]:
    return {str(claim["_id"]) async for claim in db[CLAIMS].find({}, {"_id": True})}


async def send(deliveries: Deliveries) -> str:
    claimed = await deliveries.claim_due()
    assert claimed is not None
    await deliveries.mark_sent([claimed.key], f"<{claimed.key}@test>")
    return claimed.key


async def test_prune_claims_drops_only_settled_old_claims(db: AsyncDatabase[Document]) -> None:
    deliveries = Deliveries(db, LEASE)
    for person in ("sent", "failed", "retried"):
        assert await deliveries.create("pilot-1", f"{person}@example.org", ["climate-resilience"])
    sent = await send(deliveries)
    failed = await deliveries.claim_due()
    retried = await deliveries.claim_due()
    assert failed is not None and retried is not None
    await deliveries.mark_failed([failed.key], "550 no such user")
    await deliveries.retry_later([retried.key], "421 busy", 0.0)
    await db[MATCH_INDEX].insert_one({"_id": "bucket-7", "data": "", "version": 2})
    now = datetime.now(UTC)
    await db[CLAIMS].insert_many([{"_id": f"bucket-7@{v}", "at": now} for v in (1, 2)])
    everything = await claim_keys(db)

    kept_young = await prune_claims(db, RETENTION, now)
    dropped = await prune_claims(db, RETENTION, now + LATER)

    assert kept_young == 0
    assert dropped == 3
    assert everything - await claim_keys(db) == {f"{sent}#1", f"{failed.key}#1", "bucket-7@1"}
    # A retry still to come and the bucket's latest version keep their claims.
    assert await claim_keys(db) == {f"{retried.key}#1", "bucket-7@2"}


async def test_prune_claims_replayed_pilot_or_stale_read_sends_nothing_twice(
    db: AsyncDatabase[Document],
) -> None:
    stale_reader, other = Deliveries(db, LEASE), Deliveries(db, LEASE)
    for person in ("first", "second"):
        assert await stale_reader.create("pilot-2", f"{person}@example.org", ["sdg-13"])
    # One read fetched both candidates; the second is sent by another replica meanwhile.
    assert await stale_reader.claim_due() is not None
    second = await send(other)
    assert await prune_claims(db, RETENTION, datetime.now(UTC) + LATER) == 1
    assert f"{second}#1" not in await claim_keys(db)

    replayed = await other.create("pilot-2", "second@example.org", ["sdg-13"])
    from_stale_read = await stale_reader.claim_due()

    assert replayed is False
    assert from_stale_read is None
    record = await db[DELIVERIES].find_one({"_id": delivery_id("pilot-2", "second@example.org")})
    assert record is not None
    assert (record["state"], record["attempts"]) == ("sent", 1)
