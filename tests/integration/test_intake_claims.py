"""The intake's claims on the real MongoDB-wire server: one owner per id, also on takeover; a
redelivery, a seal and a confirmation read nothing that grows with the campaign."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from services.intake.app import RESPONSE_CLAIMS
from services.intake.claims import Claim, ClaimStore
from shared import mongo
from tests.support import Stack

pytestmark = pytest.mark.integration

LEASE = timedelta(seconds=30)
REPLICAS = 12  # each with its own client, as separate intake processes would have


class Commands(CommandListener):
    """Counts the commands one client sends, by name and collection."""

    def __init__(self) -> None:
        self.sent: Counter[tuple[str, str]] = Counter()

    def started(self, event: CommandStartedEvent) -> None:
        self.sent[event.command_name, str(event.command.get(event.command_name))] += 1

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def pending_of(claims: AsyncCollection[mongo.Document]) -> AsyncCollection[mongo.Document]:
    """The collection of the claims not known to be published."""
    return claims.database[f"{claims.name}_pending"]


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
        # Odd rounds: a record with a claim id; even ones: as upgraded from a claim without one.
        named = {"claim": f"dead-replica-{round_}" if round_ % 2 else ""}
        await pending_of(collections[0]).insert_one(
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


async def test_claim_redelivered_after_publish_duplicate_in_any_replica(
    collections: list[AsyncCollection[mongo.Document]],
) -> None:
    owner, other = (ClaimStore(collection, LEASE) for collection in collections[:2])
    key = "generic:redelivered"
    assert await owner.claim(key) is Claim.CLAIMED
    await owner.confirm(key)

    assert await other.claim(key) is Claim.DUPLICATE
    assert await other.claim(key) is Claim.DUPLICATE  # its check left nothing pending
    assert await pending_of(collections[0]).count_documents({}) == 0


async def test_claim_released_taken_at_once_by_the_next_delivery(
    collections: list[AsyncCollection[mongo.Document]],
) -> None:
    owner, retry = (ClaimStore(collection, LEASE) for collection in collections[:2])
    key = "generic:publish-failed"
    assert await owner.claim(key) is Claim.CLAIMED
    assert await retry.claim(key) is Claim.IN_FLIGHT

    await owner.release(key)  # the broker refused it

    assert await retry.claim(key) is Claim.CLAIMED  # no lease to wait for: nothing was written
    await retry.confirm(key)
    assert await owner.claim(key) is Claim.DUPLICATE


async def test_claim_first_delivery_sealed_later_ones_duplicate(
    collections: list[AsyncCollection[mongo.Document]],
) -> None:
    store = ClaimStore(collections[0], LEASE)
    await store.seal(["~generic:late", "~generic:late"])  # set twice: the second changes nothing

    assert await store.claim("generic:late", seal="~generic:late") is Claim.SEALED
    assert await store.claim("generic:late", seal="~generic:late") is Claim.DUPLICATE
    assert await store.claim("generic:fresh", seal="~generic:fresh") is Claim.CLAIMED
    await store.confirm("generic:fresh")
    await store.seal(["~generic:fresh"])  # sealed after its first delivery: a duplicate still
    assert await store.claim("generic:fresh", seal="~generic:fresh") is Claim.DUPLICATE


async def test_claim_upgrade_earlier_layout_confirmed_duplicate_unconfirmed_taken_over(
    collections: list[AsyncCollection[mongo.Document]],
) -> None:
    # As earlier versions left them: each claim's state in the claim, confirmations apart.
    claims = collections[0]
    long_ago = datetime.now(UTC) - 10 * LEASE
    await claims.insert_many(
        [
            {"_id": "generic:old-published", "state": "published", "claimed_at": long_ago},
            {"_id": "generic:old-confirmed", "state": "publishing", "claimed_at": long_ago},
            {"_id": "generic:old-dead", "state": "publishing", "claimed_at": long_ago},
            {
                "_id": "generic:old-dead-id",
                "state": "publishing",
                "claimed_at": long_ago,
                "claim": "c1",
            },
        ]
    )
    await claims.database[f"{claims.name}_published"].insert_one({"_id": "generic:old-confirmed"})
    stores = [ClaimStore(collection, LEASE) for collection in collections[:3]]

    await asyncio.gather(*(store.upgrade() for store in stores))  # replicas starting together
    await stores[0].upgrade()  # and a restart

    outcomes = [
        await stores[1].claim(key)
        for key in (
            "generic:old-published",
            "generic:old-confirmed",
            "generic:old-dead",
            "generic:old-dead-id",
            "generic:old-dead",
        )
    ]
    assert outcomes == [
        Claim.DUPLICATE,
        Claim.DUPLICATE,
        Claim.CLAIMED,
        Claim.CLAIMED,
        Claim.IN_FLIGHT,
    ]


async def test_claim_redelivery_seal_and_confirmation_read_only_pending_records(
    stack: Stack, run_id: str
) -> None:
    commands = Commands()
    client: AsyncMongoClient[mongo.Document] = AsyncMongoClient(
        stack.mongodb_url, tz_aware=True, event_listeners=[commands]
    )
    try:
        claims = client[f"test_{run_id}"][RESPONSE_CLAIMS]
        store = ClaimStore(claims, LEASE)
        for key in ("generic:a", "generic:b"):
            assert await store.claim(key, seal=f"~{key}") is Claim.CLAIMED
            await store.confirm(key)
        await store.seal(["~generic:c"])
        commands.sent.clear()

        redelivered = [await store.claim(key, seal=f"~{key}") for key in ("generic:a", "generic:c")]
        await store.seal(["~generic:a"])

        assert redelivered == [Claim.DUPLICATE, Claim.SEALED]
        # Commands that filter (a scan on FerretDB) go to the pending records alone; the claims
        # themselves are only inserted into.
        assert {(name, collection) for name, collection in commands.sent} == {
            ("insert", f"{RESPONSE_CLAIMS}_pending"),
            ("insert", RESPONSE_CLAIMS),
            ("delete", f"{RESPONSE_CLAIMS}_pending"),
        }
    finally:
        await client.close()


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
