"""The intake's claims on the real MongoDB-wire server: one owner per id, also on takeover."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.asynchronous.collection import AsyncCollection

from services.intake.app import RESPONSE_CLAIMS
from services.intake.claims import Claim, ClaimStore
from shared import mongo
from tests.support import Stack

pytestmark = pytest.mark.integration

LEASE = timedelta(seconds=30)
REPLICAS = 12  # each with its own client, as separate intake processes would have


@pytest.fixture
async def collections(
    stack: Stack, run_id: str
) -> AsyncIterator[list[AsyncCollection[mongo.Document]]]:
    clients = [mongo.new_client(stack.mongodb_url) for _ in range(REPLICAS)]
    try:
        yield [client[f"test_{run_id}"][RESPONSE_CLAIMS] for client in clients]
    finally:
        for client in clients:
            await client.close()


async def test_claim_stale_takeover_exactly_one_wins(
    collections: list[AsyncCollection[mongo.Document]],
) -> None:
    stores = [ClaimStore(collection, LEASE) for collection in collections]
    died = datetime.now(UTC) - 2 * LEASE  # its replica died mid-publish
    for round_ in range(5):
        key = f"generic:stale-{round_}"
        # Odd rounds: a claim with an id; even ones: as written before claims had ids.
        named = {"claim": f"dead-replica-{round_}"} if round_ % 2 else {}
        await collections[0].insert_one(
            {"_id": key, "state": "publishing", "claimed_at": died, **named}
        )

        outcomes = await asyncio.gather(*(store.claim(key) for store in stores))

        assert sorted(outcomes) == sorted([Claim.CLAIMED] + [Claim.IN_FLIGHT] * (REPLICAS - 1))


async def test_claim_taken_over_then_released_by_late_owner_keeps_new_claim(
    collections: list[AsyncCollection[mongo.Document]],
) -> None:
    late, taker, third = (ClaimStore(collection, LEASE) for collection in collections[:3])
    key = "generic:late-owner"
    assert await late.claim(key, datetime.now(UTC) - 2 * LEASE) is Claim.CLAIMED
    assert await taker.claim(key) is Claim.CLAIMED  # the lease ran out: taken over

    await late.release(key)  # the first owner's publish failed after all

    assert await third.claim(key) is Claim.IN_FLIGHT  # the taker still publishes it
    await taker.confirm(key)
    assert await third.claim(key) is Claim.DUPLICATE


async def test_claim_released_then_stale_again_taken_over(
    collections: list[AsyncCollection[mongo.Document]],
) -> None:
    first, second = (ClaimStore(collection, LEASE) for collection in collections[:2])
    key = "generic:claimed-twice"
    long_ago = datetime.now(UTC) - 4 * LEASE
    for _ in range(2):  # a takeover of one claim does not block that of a later one
        assert await first.claim(key, long_ago) is Claim.CLAIMED
        assert await second.claim(key, long_ago + 2 * LEASE) is Claim.CLAIMED
        await second.release(key)


async def test_claim_concurrent_in_one_replica_one_owner_per_id(
    collections: list[AsyncCollection[mongo.Document]],
) -> None:
    store = ClaimStore(collections[0], LEASE)  # its inserts go to the server in batches
    keys = [f"generic:batched-{number % 20}" for number in range(60)]

    outcomes = await asyncio.gather(*(store.claim(key) for key in keys))
    for key in keys[:20]:
        await store.confirm(key)
    again = await asyncio.gather(*(store.claim(key) for key in keys[:20]))

    owners = [key for key, outcome in zip(keys, outcomes, strict=True) if outcome is Claim.CLAIMED]
    assert sorted(owners) == sorted(set(keys))
    assert set(outcomes) == {Claim.CLAIMED, Claim.IN_FLIGHT}
    assert set(again) == {Claim.DUPLICATE}


async def test_claim_confirmed_by_earlier_version_duplicate(
    collections: list[AsyncCollection[mongo.Document]],
) -> None:
    # Confirmed claims of earlier versions: the claim itself says "published".
    key = "generic:confirmed-long-ago"
    long_ago = datetime.now(UTC) - 10 * LEASE
    await collections[0].insert_one(
        {"_id": key, "state": "published", "claimed_at": long_ago, "published_at": long_ago}
    )

    assert await ClaimStore(collections[1], LEASE).claim(key) is Claim.DUPLICATE


async def test_claim_while_confirmation_on_its_way_duplicate_here_in_flight_elsewhere(
    collections: list[AsyncCollection[mongo.Document]],
) -> None:
    here, elsewhere = (ClaimStore(collection, LEASE) for collection in collections[:2])
    key = "generic:confirming"
    assert await here.claim(key) is Claim.CLAIMED

    confirming = here.confirm_soon(key)  # the broker acknowledged it
    at_once = await asyncio.gather(here.claim(key), elsewhere.claim(key))
    await confirming

    assert at_once[0] is Claim.DUPLICATE  # this process knows it is published
    assert at_once[1] in (Claim.IN_FLIGHT, Claim.DUPLICATE)  # as while it was being published
    assert await elsewhere.claim(key) is Claim.DUPLICATE
    assert await here.claim(key) is Claim.DUPLICATE
