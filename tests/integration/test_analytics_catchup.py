"""Catching up after a crash: records the aggregates already cover are left out before any read
of the stored responses, and the counts stay exact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from pymongo import AsyncMongoClient

from services.analytics.aggregates import OVERALL
from services.analytics.consumer import handle_batch
from services.analytics.store import AnalyticsStore, Positioned, Recorded
from shared import mongo
from shared.events import SurveyResponse
from shared.mongo import Document
from tests.support import Stack, canonical_response

pytestmark = pytest.mark.integration


class CountingStore(AnalyticsStore):
    """The real store, counting the responses handed to its raw insert (each a read of the
    stored responses when it meets a duplicate)."""

    recorded: list[int]

    async def record_each(self, batch: list[Positioned], tracked: bool = False) -> Recorded:
        self.recorded.append(len(batch))
        return await super().record_each(batch, tracked)


@pytest.fixture
async def client(stack: Stack, run_id: str) -> AsyncIterator[AsyncMongoClient[Document]]:
    client = mongo.new_client(stack.mongodb_url)
    yield client
    await client.drop_database(f"test_{run_id}")
    await client.close()


def records(first: int, last: int) -> list[ConsumerRecord[Any, Any]]:
    """Responses `first`..`last` as partition 0 holds them at their own offsets."""
    out = []
    for number in range(first, last + 1):
        body = canonical_response(f"generic:c{number}", submitted_at="2024-05-02T10:31:00Z")
        value = SurveyResponse.model_validate(
            {**body, "source": "generic", "received_at": datetime.now(UTC)}
        ).model_dump_json()
        out.append(
            ConsumerRecord("t", 0, number, 0, 0, None, value.encode(), None, 0, len(value), [])
        )
    return out


async def test_handle_batch_redelivered_after_crash_skips_what_is_applied(
    client: AsyncMongoClient[Document], run_id: str
) -> None:
    writer = AnalyticsStore(client[f"test_{run_id}"])
    assert await handle_batch(records(0, 9), writer, None) == 10  # type: ignore[arg-type]

    # A restarted process reads from the last commit: the batch again, and five new ones.
    restarted = CountingStore(client[f"test_{run_id}"])
    restarted.recorded = []
    counted = await handle_batch(records(0, 14), restarted, None)  # type: ignore[arg-type]
    again = await handle_batch(records(10, 14), restarted, None)  # type: ignore[arg-type]
    total = await restarted.aggregate(OVERALL)

    assert counted == 5 and again == 0
    assert restarted.recorded == [5, 0]  # the ten applied ones were never looked up
    assert total is not None and total["total"] == 15
