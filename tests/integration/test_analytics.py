"""Analytics against the real broker and MongoDB-wire server: exact counts whatever repeats."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.analytics.aggregates import OVERALL, survey_key
from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore, Positioned
from shared import mongo, topics
from shared.events import SurveyResponse
from tests.support import (
    OPERATOR,
    Stack,
    canonical_response,
    eventually,
    produce,
    read_topic,
    serving,
    settings_for,
)

pytestmark = pytest.mark.integration


def event(
    number: int, survey: str = "cities-2024-priorities", **overrides: object
) -> SurveyResponse:
    body = canonical_response(f"generic:r{number}", survey_id=survey, **overrides)
    return SurveyResponse.model_validate(
        {**body, "source": "generic", "received_at": datetime.now(UTC)}
    )


def without_watermarks(document: dict[str, object] | None) -> dict[str, object]:
    return {k: v for k, v in (document or {}).items() if k not in ("_id", "applied")}


async def test_apply_counts_replays_and_zombies_once(stack: Stack, run_id: str) -> None:
    client = mongo.new_client(stack.mongodb_url)
    store = AnalyticsStore(client[f"test_{run_id}"])
    other = "cities-2024-capacity"
    responses = [
        event(n, survey=other if n % 3 == 0 else "cities-2024-priorities") for n in range(9)
    ]
    # Partition 0 holds r0..r5 at offsets 0..5, then a duplicate of r1 at offset 6.
    first = [Positioned(r, 0, offset) for offset, r in enumerate(responses[:6])]
    duplicate = [Positioned(responses[1], 0, 6)]
    second = [Positioned(r, 1, offset) for offset, r in enumerate(responses[6:])]
    try:
        for batch in (first, first, duplicate, second, first[2:] + duplicate):
            await store.apply(await store.record(batch))
        # A zombie that read the first batch before the rebalance applies it late.
        await store.apply(await store.record(first[:3]))

        recount = await store.recount()
        for key in (OVERALL, survey_key("cities-2024-priorities"), survey_key(other)):
            running = without_watermarks(await store.aggregate(key))
            assert _flatten(running) == dict(recount[key]), key
        overall = await store.aggregate(OVERALL)
        assert overall is not None
        assert overall["total"] == 9
        assert overall["surveys"] == {"cities-2024-priorities": 6, other: 3}
    finally:
        await client.close()


async def test_consume_counts_unique_and_parks_poison(stack: Stack, run_id: str) -> None:
    settings = settings_for(AnalyticsSettings, stack.environment(run_id), analytics_batch_size=7)
    responses = [event(n) for n in range(40)]
    records = [(r.response_id.encode(), r.model_dump_json().encode()) for r in responses]
    duplicates = records[:5]
    poison = [(b"poison-1", b"{not json"), (b"poison-2", json.dumps({"x": 1}).encode())]
    await produce(stack.kafka, settings.topic_responses, records + duplicates + poison)

    async with serving(create_app(settings)) as client:

        async def summary() -> dict[str, object]:
            answer = await client.get("/v1/surveys/cities-2024-priorities/summary")
            return dict(answer.json())

        counted = await eventually(summary, lambda s: s["total"] == 40, within=60)

        async def overall() -> dict[str, object]:
            return dict((await client.get("/v1/overview")).json())

        # Each aggregate document is exact on its own; the overall one may be written a moment
        # after the survey's, so it is awaited too.
        overview = await eventually(overall, lambda o: o["total"] == 40, within=60)
        surveys = (await client.get("/v1/surveys")).json()

    assert counted["by_country"] == {"VN": 40}
    assert counted["development_priorities"] == {"sdg-11": 40, "sdg-6": 40}
    assert counted["by_city"] == [{"country": "VN", "city": "Đà Nẵng", "count": 40}]
    assert overview["surveys"] == {"cities-2024-priorities": 40}
    assert surveys == [
        {
            "survey_id": "cities-2024-priorities",
            "title": "Development priorities of cities",
            "total": 40,
        }
    ]
    parked = await read_topic(stack.kafka, topics.dlq(settings.topic_responses))
    assert sorted(record.key for record in parked) == [b"poison-1", b"poison-2"]
    assert all(dict(record.headers).get("dlq-error") for record in parked)


async def test_summary_never_returns_personal_data(stack: Stack, run_id: str) -> None:
    settings = settings_for(AnalyticsSettings, stack.environment(run_id))
    focal = {"name": "Private Person", "email": "private@example.org", "consent": True}
    secret = event(1, focal_point=focal, answers={"comments": "free text stays inside"})
    await produce(
        stack.kafka,
        settings.topic_responses,
        [(secret.response_id.encode(), secret.model_dump_json().encode())],
    )
    async with serving(create_app(settings)) as client:

        async def total() -> int:
            return int((await client.get("/v1/overview")).json()["total"])

        await eventually(total, lambda n: n == 1, within=60)
        pages = [
            (await client.get(path)).text
            for path in (
                "/v1/overview",
                "/v1/surveys",
                "/v1/surveys/cities-2024-priorities/summary",
            )
        ]
    for page in pages:
        assert "private" not in page.lower()
        assert "free text" not in page


async def test_overview_never_trails_a_survey_when_overall_document_lags(
    stack: Stack, run_id: str
) -> None:
    settings = settings_for(AnalyticsSettings, stack.environment(run_id))
    app = create_app(settings)
    store: AnalyticsStore = app.state.store
    capacity = "cities-2024-capacity"
    first = [Positioned(event(n), 0, n) for n in range(3)]
    late = [Positioned(event(10 + n, survey=capacity), 0, 3 + n) for n in range(2)]
    async with serving(app) as client:
        await store.apply(await store.record(first))
        before = await store.newest(OVERALL)
        assert before is not None
        await store.apply(await store.record(late))
        # The overall document back where a writer stopped between the survey's document and the
        # overall one leaves it: one batch behind.
        await store.replace_aggregates({OVERALL: before})
        trailing = await store.aggregate(OVERALL)
        overview = (await client.get("/v1/overview")).json()
        vietnam = (
            await client.get("/v1/overview", params={"country": "VN"}, headers=OPERATOR)
        ).json()
        surveys = (await client.get("/v1/surveys")).json()
        survey = (await client.get(f"/v1/surveys/{capacity}/summary")).json()
        ranking = (await client.get("/v1/partners", headers=OPERATOR)).json()

    assert trailing is not None and trailing["total"] == 3
    assert survey["total"] == 2
    assert overview["total"] == vietnam["total"] == 5
    assert overview["surveys"] == vietnam["surveys"] == {"cities-2024-priorities": 3, capacity: 2}
    assert overview["development_priorities"] == {"sdg-11": 5, "sdg-6": 5}
    assert {s["survey_id"]: s["total"] for s in surveys} == overview["surveys"]
    assert sum(p["responses"] for p in ranking["partners"]) == 5


def _flatten(document: dict[str, object], prefix: str = "") -> dict[str, int]:
    flat: dict[str, int] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = int(value)  # type: ignore[call-overload]
    return flat
