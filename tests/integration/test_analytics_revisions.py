"""Exact corrections on the real MongoDB-wire server: revisions move a response's contribution,
reviews remove and restore it, through replays, late older messages and racing consumers; and
`verify` and `rebuild` agree with the running numbers."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.analytics import maintenance
from services.analytics.aggregates import OVERALL, survey_key
from services.analytics.audit import flatten
from services.analytics.states import review_partition
from services.analytics.store import (
    RESPONSES,
    STATES,
    AnalyticsStore,
    Message,
    Positioned,
    PositionedReview,
)
from shared import mongo
from shared.events import ResponseReview, SurveyResponse
from shared.mongo import Document
from tests.support import canonical_response

pytestmark = pytest.mark.integration
SURVEY = "cities-2024-priorities"
PRIORITIES = survey_key(SURVEY)


def response(name: str, revision: int, country: str, offset: int, **extra: Any) -> Positioned:
    body = canonical_response(f"generic:{name}")
    body["respondent"] = {**body["respondent"], "country": country, "city": f"City {country}"}
    event = SurveyResponse.model_validate(
        {
            **body,
            **extra,
            "revision": revision,
            "source": "generic",
            "received_at": datetime.now(UTC),
        }
    )
    return Positioned(event, 0, offset)


def review(name: str, status: str, order: int, offset: int) -> PositionedReview:
    event = ResponseReview(
        review_id=f"rv{order}",
        survey_id=SURVEY,
        response_id=f"generic:{name}",
        status=status,
        reviewed_at=datetime.now(UTC),
        order=order,
    )
    return PositionedReview(event, review_partition(0), offset)


def new_store(mongo_client: AsyncMongoClient[Document], run_id: str) -> AnalyticsStore:
    return AnalyticsStore(mongo.database(mongo_client, f"test_{run_id}"))


async def consume(store: AnalyticsStore, batch: list[Message]) -> None:
    """What the consumers do with a batch: store raw responses, track changes, apply them."""
    responses = [message for message in batch if isinstance(message, Positioned)]
    reviews = [message for message in batch if isinstance(message, PositionedReview)]
    recorded = await store.record_each(responses, tracked=True)
    counted: list[Message] = [*recorded.counted, *reviews]
    await store.apply(await store.track(counted, recorded.inserted))


async def running(store: AnalyticsStore, key: str = PRIORITIES) -> Counter[str]:
    document = await store.newest(key)
    return flatten(document or {})


async def test_track_revision_review_retraction_counted_exactly_through_replays(
    mongo_client: AsyncMongoClient[Document], run_id: str
) -> None:
    store = new_store(mongo_client, run_id)
    first = [response("a", 1, "VN", 0), response("b", 1, "VN", 1)]
    await consume(store, first)
    assert (await running(store))["by_country.VN"] == 2

    moved = [response("a", 2, "TH", 2)]
    await consume(store, moved)
    after_move = await running(store)
    assert (after_move["total"], after_move["by_country.VN"], after_move["by_country.TH"]) == (
        2,
        1,
        1,
    )

    rejected = [review("b", "rejected", 10, 0)]
    await consume(store, rejected)
    assert (await running(store))["total"] == 1
    assert (await running(store))["by_review.rejected"] == 1

    # Replays of everything so far, a late older revision and an older review: nothing changes.
    await consume(store, first + moved + rejected)
    await consume(store, [response("a", 1, "LA", 3), review("b", "approved", 5, 1)])
    assert (
        await running(store) == (await running(store))
        and (await running(store))["by_country.LA"] == 0
    )
    assert (await running(store))["total"] == 1

    await consume(store, [review("b", "approved", 20, 2), review("a", "retracted", 21, 3)])
    final = await running(store)
    assert final["total"] == 1
    assert (final["by_country.VN"], final["by_country.TH"]) == (1, 0)
    assert (final["by_review.approved"], final["by_review.rejected"]) == (1, 0)
    assert (await running(store, OVERALL))[f"surveys.{SURVEY}"] == 1

    audit = await maintenance.verify(store)
    assert audit.drifts == [], [str(drift) for drift in audit.drifts]
    recount = await store.recount()
    assert +recount[PRIORITIES] == +final

    await maintenance.rebuild(store)
    assert +(await running(store)) == +final
    assert (await maintenance.verify(store)).drifts == []


async def test_track_racing_consumers_one_chain_exact_counts(
    mongo_client: AsyncMongoClient[Document], run_id: str
) -> None:
    # Two consumers (or a zombie and its successor) change the same responses at once: the
    # revisions from the responses topic, the reviews from the reviews topic, some twice (as
    # Kafka hands them out: a batch from the committed offset on, of any size).
    one, other = new_store(mongo_client, run_id), new_store(mongo_client, run_id)
    names = [f"r{n}" for n in range(20)]
    await consume(one, [response(name, 1, "VN", n) for n, name in enumerate(names)])
    revisions: list[Message] = [response(name, 2, "KE", 100 + n) for n, name in enumerate(names)]
    reviews: list[Message] = [
        review(name, "rejected" if n % 2 else "approved", 1000 + n, n)
        for n, name in enumerate(names)
    ]
    await asyncio.gather(
        consume(one, revisions),
        consume(other, reviews),
        consume(other, revisions[:10]),  # the same messages read twice at once
        consume(one, reviews[:12]),
    )

    counters = await running(one)
    assert counters["total"] == 10  # the even ones approved, the odd ones rejected
    assert (counters["by_country.KE"], counters["by_country.VN"]) == (10, 0)
    assert (counters["by_review.approved"], counters["by_review.rejected"]) == (10, 10)
    assert (await maintenance.verify(one)).drifts == []


async def test_track_review_or_newer_revision_before_first_revision_counted_once(
    mongo_client: AsyncMongoClient[Document], run_id: str
) -> None:
    store = new_store(mongo_client, run_id)
    # A rejection of c and revision 2 of d arrive before either response's revision 1.
    await consume(store, [review("c", "rejected", 7, 0), response("d", 2, "KE", 0)])
    assert (await running(store))["total"] == 1
    await consume(store, [response("c", 1, "VN", 1), response("d", 1, "LA", 2)])
    await consume(store, [response("c", 1, "VN", 1), response("d", 1, "LA", 2)])  # replayed

    counters = await running(store)
    assert (counters["total"], counters["by_review.rejected"]) == (1, 1)
    assert (counters["by_country.KE"], counters["by_country.VN"], counters["by_country.LA"]) == (
        1,
        0,
        0,
    )
    assert (await maintenance.verify(store)).drifts == []


async def test_track_response_stored_before_states_existed_corrected_exactly(
    mongo_client: AsyncMongoClient[Document], run_id: str
) -> None:
    store = new_store(mongo_client, run_id)
    # Stored and counted as before states existed (by its position alone).
    old = [response("old", 1, "VN", 0), response("kept", 1, "VN", 1)]
    await store.apply(await store.record(old))
    # Read again after the upgrade (a replay), then corrected: moved, then rejected.
    await consume(store, old)
    assert (await running(store))["total"] == 2
    await consume(store, [response("old", 2, "BR", 2)])
    await consume(store, [review("old", "rejected", 3, 0), review("kept", "approved", 4, 1)])

    counters = await running(store)
    assert (counters["total"], counters["by_country.VN"], counters["by_country.BR"]) == (1, 1, 0)
    assert (counters["by_review.rejected"], counters["by_review.approved"]) == (1, 1)
    assert (await maintenance.verify(store)).drifts == []
    assert +(await store.recount())[PRIORITIES] == +counters


async def test_track_new_responses_write_nothing_but_their_raw_documents(
    mongo_client: AsyncMongoClient[Document], run_id: str
) -> None:
    store = new_store(mongo_client, run_id)
    db = mongo.database(mongo_client, f"test_{run_id}")
    new = [response(f"n{n}", 1, "VN", n) for n in range(5)]
    await consume(store, new)
    await consume(store, new)  # replayed: each is its own first entry again

    assert await db[STATES].count_documents({}) == 0
    assert await db[RESPONSES].count_documents({}) == 5
    assert (await running(store))["total"] == 5
    # A later review is the first entry written beside the raw documents.
    await consume(store, [review("n0", "rejected", 9, 0)])
    assert await db[STATES].count_documents({}) == 1
    assert (await running(store))["total"] == 4
    assert (await maintenance.verify(store)).drifts == []


async def test_track_first_revision_after_a_review_stored_beside_its_placeholder(
    mongo_client: AsyncMongoClient[Document], run_id: str
) -> None:
    store = new_store(mongo_client, run_id)
    db = mongo.database(mongo_client, f"test_{run_id}")
    await consume(store, [review("late", "approved", 3, 0)])
    placeholder = await db[RESPONSES].find_one({"_id": f"{SURVEY}/generic:late"})
    await consume(store, [response("late", 1, "KE", 0), response("late", 1, "KE", 1)])
    await consume(store, [response("late", 1, "KE", 0)])  # replayed

    counters = await running(store)
    assert placeholder is not None and placeholder.get("placeholder") is True
    assert await db[RESPONSES].count_documents({"_id": f"{SURVEY}/generic:late#r1"}) == 1
    assert (counters["total"], counters["by_country.KE"], counters["by_review.approved"]) == (
        1,
        1,
        1,
    )
    assert +(await store.recount())[PRIORITIES] == +counters
    assert (await maintenance.verify(store)).drifts == []
