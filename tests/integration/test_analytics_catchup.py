"""Catching up after a crash: records the aggregates already cover are left out before any read
of the stored responses, and the counts stay exact."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.analytics import consumer
from services.analytics.aggregates import OVERALL
from services.analytics.consumer import handle_batch, handle_reviews
from services.analytics.documents import probe_document, revision_id
from services.analytics.states import Change
from services.analytics.store import (
    PROBE,
    RECEIPTS,
    RESPONSES,
    AnalyticsStore,
    Chains,
    Message,
    OffsetRun,
    Positioned,
    RawInsert,
    runs_fields,
)
from shared.events import ResponseReview, SurveyResponse
from shared.mongo import Document
from tests.support import canonical_response

pytestmark = pytest.mark.integration
STORED_READS_TOTAL = "analytics_stored_response_reads_total"


class CountingStore(AnalyticsStore):
    """The real store, counting the responses handed to each raw insert, the `_id`s of each
    read of the stored responses (a scan on FerretDB: to count them, or to read their chains)
    and the messages handed to `track`."""

    recorded: list[int]
    tracked: list[int]
    looked_up: list[int]

    async def insert_raw(self, documents: list[Document], receipt: bool = False) -> RawInsert:
        self.recorded.append(len(documents))
        return await super().insert_raw(documents, receipt)

    async def _stored(self, ids: list[str]) -> dict[str, Document]:
        if ids:
            self.looked_up.append(len(ids))
        return await super()._stored(ids)

    async def _read(self, identities: list[str]) -> Chains:
        if identities:
            self.looked_up.append(len(identities))
        return await super()._read(identities)

    async def track(
        self,
        messages: list[Message],
        inserted: frozenset[str] = frozenset(),
        firsts: Mapping[str, Change] | None = None,
    ) -> list[Change | Positioned]:
        self.tracked.append(len(messages))
        return await super().track(messages, inserted, firsts)


def record(offset: int, value: str) -> ConsumerRecord[Any, Any]:
    """A record of partition 0 at `offset`."""
    return ConsumerRecord("t", 0, offset, 0, 0, None, value.encode(), None, 0, len(value), [])


def reviews(first: int, last: int) -> list[ConsumerRecord[Any, Any]]:
    """Rejections of responses `first`..`last`, each at its own offset of partition 0."""
    return [
        record(
            number,
            ResponseReview(
                review_id=f"rv{number}",
                survey_id="cities-2024-priorities",
                response_id=f"generic:c{number}",
                status="rejected",
                reviewed_at=datetime.now(UTC),
                order=number,
            ).model_dump_json(),
        )
        for number in range(first, last + 1)
    ]


def response(number: int) -> str:
    """Response `number` as a record's value."""
    body = canonical_response(f"generic:c{number}", submitted_at="2024-05-02T10:31:00Z")
    return SurveyResponse.model_validate(
        {**body, "source": "generic", "received_at": datetime.now(UTC)}
    ).model_dump_json()


def records(first: int, last: int) -> list[ConsumerRecord[Any, Any]]:
    """Responses `first`..`last` as partition 0 holds them at their own offsets."""
    return [record(number, response(number)) for number in range(first, last + 1)]


def probed() -> float:
    """The process's `analytics_stored_response_probes_total`."""
    return REGISTRY.get_sample_value("analytics_stored_response_probes_total") or 0.0


def stored_reads() -> float:
    """The process's `analytics_stored_response_reads_total`, every reason together."""
    return sum(
        REGISTRY.get_sample_value(STORED_READS_TOTAL, {"reason": reason}) or 0.0
        for reason in ("settle", "chains", "probe")
    )


def counting(db: AsyncDatabase[Document]) -> CountingStore:
    """A `CountingStore` of `db` that counted nothing yet."""
    store = CountingStore(db)
    store.recorded, store.tracked, store.looked_up = [], [], []
    return store


async def crashed_after_raw_insert(
    db: AsyncDatabase[Document], first: int = 0, last: int = 9
) -> None:
    """Records `first`..`last` stored raw, with their receipts, and never applied."""
    await consumer.record_chunks(records(first, last), AnalyticsStore(db), None, None)  # type: ignore[arg-type]


async def test_handle_batch_redelivered_after_crash_skips_what_is_applied(
    mongo_client: AsyncMongoClient[Document], run_id: str
) -> None:
    writer = AnalyticsStore(mongo_client[f"test_{run_id}"])
    assert await handle_batch(records(0, 9), writer, None) == 10  # type: ignore[arg-type]

    # A restarted process reads from the last commit: the batch again, and five new ones.
    restarted = counting(mongo_client[f"test_{run_id}"])
    counted = await handle_batch(records(0, 14), restarted, None)  # type: ignore[arg-type]
    again = await handle_batch(records(10, 14), restarted, None)  # type: ignore[arg-type]
    total = await restarted.aggregate(OVERALL)

    assert counted == 5 and again == 0
    # The ten applied ones were never looked up; a batch all applied stores nothing at all.
    assert restarted.recorded == [5]
    assert total is not None and total["total"] == 15


@pytest.mark.parametrize(
    ("receipts", "probes"),
    [
        # The receipts say the earlier attempt stored them, at these positions: no read of the
        # stored responses (each a scan on FerretDB), neither to count them nor to track them.
        ("runs", 0),
        # The same from receipts written before they listed runs of positions (their `_id`s).
        ("ids", 0),
        # The crash came before the receipts were stored: a probe finds each stored from its
        # own position, and what is stored there needs no read of chains either.
        (None, 10),
    ],
)
async def test_handle_batch_stored_before_crash_counts_all_with_few_reads(
    mongo_client: AsyncMongoClient[Document],
    run_id: str,
    monkeypatch: pytest.MonkeyPatch,
    receipts: str | None,
    probes: int,
) -> None:
    monkeypatch.setattr(consumer, "RECORD_CHUNK", 4)
    db = mongo_client[f"test_{run_id}"]
    await crashed_after_raw_insert(db)
    if receipts != "runs":
        await db[RECEIPTS].delete_many({})
    if receipts == "ids":
        ids = [revision_id(f"cities-2024-priorities/generic:c{n}", 1) for n in range(10)]
        legacy = {"_id": "legacy", "ids": ids, "partitions": [0] * 10, "offsets": list(range(10))}
        await db[RECEIPTS].insert_one(legacy)

    restarted = counting(db)
    reads, probed_before = stored_reads(), probed()
    counted = await handle_batch(records(0, 9), restarted, None)  # type: ignore[arg-type]
    total = await restarted.aggregate(OVERALL)

    assert counted == 10
    assert restarted.recorded == [4, 4, 2]
    assert restarted.looked_up == []
    # What operators see in `/metrics`: no read, and the positions probed instead.
    assert (stored_reads() - reads, probed() - probed_before) == (0, probes)
    assert total is not None and total["total"] == 10
    assert await db[RECEIPTS].count_documents({}) == 0  # applied: dropped


async def test_handle_batch_redelivered_drops_receipts_of_applied_batches(
    mongo_client: AsyncMongoClient[Document], run_id: str
) -> None:
    db = mongo_client[f"test_{run_id}"]
    assert await handle_batch(records(0, 9), AnalyticsStore(db), None) == 10  # type: ignore[arg-type]
    # A crash after that batch was applied, before its receipts were dropped.
    left = {"_id": "left", "ids": ["x"], "partitions": [0], "offsets": [9]}
    await db[RECEIPTS].insert_one(left)
    await crashed_after_raw_insert(db, 10, 19)

    counted = await handle_batch(records(10, 19), counting(db), None)  # type: ignore[arg-type]

    assert counted == 10
    assert await db[RECEIPTS].count_documents({}) == 0


async def test_handle_reviews_redelivered_after_crash_skips_what_is_applied(
    mongo_client: AsyncMongoClient[Document], run_id: str
) -> None:
    writer = AnalyticsStore(mongo_client[f"test_{run_id}"])
    await handle_batch(records(0, 5), writer, None)  # type: ignore[arg-type]
    assert await handle_reviews(reviews(0, 3), writer, None) == 4  # type: ignore[arg-type]

    restarted = counting(mongo_client[f"test_{run_id}"])
    changed = await handle_reviews(reviews(0, 5), restarted, None)  # type: ignore[arg-type]
    total = await restarted.aggregate(OVERALL)

    assert changed == 2
    assert restarted.tracked == [2]  # the four applied ones were never looked up
    assert total is not None and total["total"] == 0


def with_duplicates() -> list[ConsumerRecord[Any, Any]]:
    """Offsets 5..14: responses 0 and 1 again (a duplicate each: stored from offsets 0 and 1),
    then responses 7..14."""
    return [record(5, response(0)), record(6, response(1)), *records(7, 14)]


async def crashed_during_insert_with_duplicates(db: AsyncDatabase[Document]) -> None:
    """Responses 0..4 applied, then `with_duplicates` stored raw and never applied, with no
    receipt: the crash came during the insert."""
    assert await handle_batch(records(0, 4), AnalyticsStore(db), None) == 5  # type: ignore[arg-type]
    await consumer.record_chunks(with_duplicates(), AnalyticsStore(db), None, None)  # type: ignore[arg-type]
    await db[RECEIPTS].delete_many({})


@pytest.mark.parametrize("few_probes", [1, 64])  # the probes left deleted at once, one by one
async def test_handle_batch_crashed_during_insert_reads_only_duplicates(
    mongo_client: AsyncMongoClient[Document],
    run_id: str,
    monkeypatch: pytest.MonkeyPatch,
    few_probes: int,
) -> None:
    monkeypatch.setattr(consumer, "RECORD_CHUNK", 4)
    monkeypatch.setattr("services.analytics.store.FEW_PROBES", few_probes)
    db = mongo_client[f"test_{run_id}"]
    await crashed_during_insert_with_duplicates(db)

    restarted = counting(db)
    counted = await handle_batch(with_duplicates(), restarted, None)  # type: ignore[arg-type]
    total = await restarted.aggregate(OVERALL)

    assert counted == 8
    # Probes find the eight stored from this batch's positions; only the two duplicates, which
    # no probe finds, are read.
    assert restarted.looked_up == [2]
    assert total is not None and total["total"] == 13
    assert await db[RESPONSES].count_documents({"_id": {"$regex": "^~probe:"}}) == 0
    assert await db[RECEIPTS].count_documents({}) == 0


async def test_handle_batch_crashed_while_probing_reads_what_another_probe_asked(
    mongo_client: AsyncMongoClient[Document], run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "RECORD_CHUNK", 4)
    db = mongo_client[f"test_{run_id}"]
    await crashed_during_insert_with_duplicates(db)
    # A crash during the probe of the batch read again: its receipt, and the probes of the two
    # duplicates' positions, stored (nothing collided) and not yet deleted.
    await db[RECEIPTS].insert_one({"_id": "cut", PROBE: True, **runs_fields([OffsetRun(0, 5, 14)])})
    left = [probe_document("cut", n, {"partition": 0, "offset": n + 5}) for n in range(2)]
    await db[RESPONSES].insert_many(left)

    restarted = counting(db)
    counted = await handle_batch(with_duplicates(), restarted, None)  # type: ignore[arg-type]
    total = await restarted.aggregate(OVERALL)
    recounted = await restarted.recount()

    # The probes of offsets 5 and 6 collide with those left behind, which proves nothing: every
    # position the other probe asked about is read.
    assert counted == 8
    assert restarted.looked_up == [10]
    assert total is not None and total["total"] == 13
    assert recounted[OVERALL]["total"] == 13  # what a probe left is no response
