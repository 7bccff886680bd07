"""Reads by id batched across concurrent requests, on the real MongoDB-wire server: one command
answers them all, each caller gets its own document, and no cursor is left to page through."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from services.intake.app import RESPONSE_REVISIONS
from services.intake.batching import FindBatcher
from services.intake.revisions import RevisionStore
from shared import mongo
from tests.support import Stack

pytestmark = pytest.mark.integration


class Commands(CommandListener):
    """Counts the commands one client sends, by name."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    def started(self, event: CommandStartedEvent) -> None:
        self.sent[event.command_name] += 1

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def counted(
    stack: Stack, run_id: str
) -> AsyncIterator[tuple[AsyncCollection[mongo.Document], Commands]]:
    """The revisions collection of the test's own database, through a client whose commands
    are counted."""
    commands = Commands()
    client: AsyncMongoClient[mongo.Document] = AsyncMongoClient(
        stack.mongodb_url, tz_aware=True, event_listeners=[commands]
    )
    database = f"test_{run_id}"
    try:
        yield client[database][RESPONSE_REVISIONS], commands
    finally:
        await client.drop_database(database)
        await client.close()


async def test_find_concurrent_one_command_each_own_document(
    counted: tuple[AsyncCollection[mongo.Document], Commands],
) -> None:
    collection, commands = counted
    await collection.insert_many([{"_id": f"s/r{n}", "revision": n, "other": "x"} for n in (2, 3)])
    commands.sent.clear()
    finds = FindBatcher(collection, ["revision"])

    found = await asyncio.gather(*(finds.find(f"s/r{n}") for n in (2, 3, 4, 2)))

    assert found == [{"_id": "s/r2", "revision": 2}, {"_id": "s/r3", "revision": 3}, None, found[0]]
    assert commands.sent == {"find": 1}


async def test_newest_all_found_one_command_no_getmore(
    counted: tuple[AsyncCollection[mongo.Document], Commands],
) -> None:
    collection, commands = counted
    await collection.insert_many([{"_id": f"s/r{n}", "revision": n + 1} for n in range(40)])
    commands.sent.clear()
    revisions = RevisionStore(collection)

    newest = await asyncio.gather(*(revisions.newest(f"s/r{n}") for n in range(40)))

    assert newest == [n + 1 for n in range(40)]
    assert commands.sent == {"find": 1}  # every id found: still nothing left to fetch
