"""Raw inserts of a batch's chunks under way at once: a response replayed within the batch is
still stored from its first position, and every response counts once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from pymongo import AsyncMongoClient

from services.analytics import consumer
from services.analytics.aggregates import OVERALL
from services.analytics.consumer import handle_batch
from services.analytics.documents import revision_id
from services.analytics.store import RESPONSES, AnalyticsStore, RawInsert
from shared.events import SurveyResponse
from shared.mongo import Document
from tests.support import canonical_response

pytestmark = pytest.mark.integration


class WatchedStore(AnalyticsStore):
    """The real store, noting the raw `_id`s of the inserts under way whenever one starts."""

    under_way: list[frozenset[str]]
    most: int
    shared: list[frozenset[str]]

    async def insert_raw(self, documents: list[Document], receipt: bool = False) -> RawInsert:
        ids = frozenset(str(document["_id"]) for document in documents)
        self.shared += [ids & other for other in self.under_way if ids & other]
        self.under_way.append(ids)
        self.most = max(self.most, len(self.under_way))
        try:
            return await super().insert_raw(documents, receipt)
        finally:
            self.under_way.remove(ids)


def watched(client: AsyncMongoClient[Document], run_id: str) -> WatchedStore:
    """A `WatchedStore` of the run's database that saw nothing yet."""
    store = WatchedStore(client[f"test_{run_id}"])
    store.under_way, store.most, store.shared = [], 0, []
    return store


def records(numbers: list[int]) -> list[ConsumerRecord[Any, Any]]:
    """Response `c<n>` for each number, one after the other at offsets 0.. of partition 0."""
    out = []
    for offset, number in enumerate(numbers):
        body = canonical_response(f"generic:c{number}")
        value = SurveyResponse.model_validate(
            {**body, "source": "generic", "received_at": datetime.now(UTC)}
        ).model_dump_json()
        out.append(ConsumerRecord("t", 0, offset, 0, 0, None, value.encode(), None, 0, 0, []))
    return out


async def test_handle_batch_inserts_chunks_at_once_counts_each(
    mongo_client: AsyncMongoClient[Document], run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "RECORD_CHUNK", 4)
    store = watched(mongo_client, run_id)

    counted = await handle_batch(records(list(range(12))), store, None)  # type: ignore[arg-type]
    total = await store.aggregate(OVERALL)

    assert counted == 12
    assert store.most == consumer.INSERTS_IN_FLIGHT == 2
    assert total is not None and total["total"] == 12


async def test_handle_batch_replay_in_a_chunk_under_way_stores_first_position(
    mongo_client: AsyncMongoClient[Document], run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "RECORD_CHUNK", 4)
    store = watched(mongo_client, run_id)
    # c1 at offset 1 (the first chunk) and again at offset 5 (the second chunk).
    batch = records([0, 1, 2, 3, 4, 1, 6, 7])

    counted = await handle_batch(batch, store, None)  # type: ignore[arg-type]
    total = await store.aggregate(OVERALL)
    replayed = await mongo_client[f"test_{run_id}"][RESPONSES].find_one(
        {"_id": revision_id("cities-2024-priorities/generic:c1", 1)}
    )

    # The second chunk waited for the first: no two inserts under way shared an `_id`.
    assert store.shared == []
    assert counted == 7
    assert total is not None and total["total"] == 7
    assert replayed is not None and replayed["position"]["offset"] == 1
