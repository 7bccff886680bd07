"""100,000 distinct cities through the analytics consumer: every number equals a hand recount,
no aggregate document comes near MongoDB's 16 MiB limit, analytics keeps counting afterwards,
and `verify` finds no drift."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from services.analytics.aggregates import OVERALL, Positioned, city_key, increments
from services.analytics.app import create_app
from services.analytics.audit import flatten, nest
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AGGREGATE_PARTS, AGGREGATES, AnalyticsStore
from shared import mongo, topics
from shared.events import SurveyResponse
from shared.kafka import consumer_lag, ensure_topics
from shared.taxonomy import load_taxonomy
from tests.recount import api_numbers, hand_summary
from tests.support import OPERATOR, Stack, eventually, run_service_command, serving, settings_for

pytestmark = pytest.mark.integration

CITIES = 100_000
RESPONSES = CITIES + 5000  # the last ones name cities named before, so counts above 1 too
COUNTRIES = ("VN", "ID", "KE", "BR", "LK", "PH", "IN", "MX")
MONGODB_LIMIT = 16 * 1024 * 1024


def response(number: int) -> dict[str, Any]:
    """A valid event; the first `CITIES` each name their own city, later ones an earlier city."""
    surveys = sorted(load_taxonomy().surveys)
    kinds = sorted(load_taxonomy().respondent_types)
    city = number if number < CITIES else number * 7919 % CITIES
    submitted = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(minutes=number % 50_000)
    stamp = submitted.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "response_id": f"generic:city-{number}",
        "survey_id": surveys[number % len(surveys)],
        "source": "generic",
        "submitted_at": stamp,
        "received_at": stamp,
        "respondent": {
            "type": kinds[number % len(kinds)],
            "country": COUNTRIES[city % len(COUNTRIES)],
            "city": f"Ciudad {city}. Barrio ${city % 13}",  # `.` and `$` must be escaped
        },
        "development_priorities": ["sdg-11"] if number % 2 else [],
        "capacity_needs": [],
        "collaboration_interests": [],
    }


async def produce_fast(bootstrap: str, topic: str, bodies: list[dict[str, Any]]) -> None:
    """Many sends in flight at once (the producer batches them), keyed by response id."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        for start in range(0, len(bodies), 5000):
            sent = [
                await producer.send(
                    topic, json.dumps(body).encode(), key=body["response_id"].encode()
                )
                for body in bodies[start : start + 5000]
            ]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


@pytest.fixture
async def environment(stack: Stack, run_id: str) -> AsyncIterator[dict[str, str]]:
    environment = stack.environment(run_id)
    topic = environment["TOPIC_RESPONSES"]
    await ensure_topics(stack.kafka, [topic])
    yield environment
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await admin.delete_topics([t for t in (topic, topics.dlq(topic)) if t in existing])
    finally:
        await admin.close()
    client = mongo.new_client(stack.mongodb_url)
    await client.drop_database(environment["MONGODB_DATABASE"])
    await client.close()


async def api_exact(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    """The overview and every survey summary, all cities listed, equal the hand recount."""
    views = [("/v1/overview", bodies, True)]
    for survey in sorted({body["survey_id"] for body in bodies}):
        mine = [body for body in bodies if body["survey_id"] == survey]
        views.append((f"/v1/surveys/{survey}/summary", mine, False))
    for path, expected, overall in views:
        answer = await client.get(
            path, params={"city_limit": 100_000}, timeout=120, headers=OPERATOR
        )
        assert answer.status_code == 200, answer.text
        shown = answer.json()
        wanted = hand_summary(expected, overall=overall)
        assert api_numbers(shown, wanted) == wanted, path
        assert shown["distinct_cities"] == len(wanted["by_city"]), path


async def document_sizes(stack: Stack, database: str) -> dict[str, tuple[int, int, int]]:
    """Aggregate versions and parts: how many collections, documents, and the largest BSON."""
    client = mongo.new_client(stack.mongodb_url)
    try:
        sizes: dict[str, tuple[int, int, int]] = {}
        for name in await client[database].list_collection_names():
            kind = AGGREGATE_PARTS if name.startswith(AGGREGATE_PARTS) else name
            if kind not in (AGGREGATES, AGGREGATE_PARTS):
                continue
            found = [len(bson.encode(d)) async for d in client[database][name].find()]
            collections, documents, largest = sizes.get(kind, (0, 0, 0))
            sizes[kind] = (collections + 1, documents + len(found), max(largest, *found))
        return sizes
    finally:
        await client.close()


async def overall(stack: Stack, database: str) -> dict[str, Any]:
    client = mongo.new_client(stack.mongodb_url)
    try:
        document = await AnalyticsStore(mongo.database(client, database)).aggregate(OVERALL)
        assert document is not None
        return document
    finally:
        await client.close()


def run(environment: dict[str, str], command: str) -> str:
    result = run_service_command("analytics", command, environment, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.mark.timeout(1800)
async def test_consume_100k_distinct_cities_exact_and_keeps_counting(
    stack: Stack, environment: dict[str, str]
) -> None:
    started = time.monotonic()

    def lap(what: str) -> None:
        print(f"{time.monotonic() - started:5.0f} s: {what}", flush=True)

    topic, group = environment["TOPIC_RESPONSES"], environment["ANALYTICS_GROUP_ID"]
    database = environment["MONGODB_DATABASE"]
    bodies = [response(n) for n in range(RESPONSES)]
    await produce_fast(stack.kafka, topic, bodies)
    lap(f"{RESPONSES} responses produced")

    async with serving(create_app(settings_for(AnalyticsSettings, environment))) as client:

        async def lag() -> int:
            return await consumer_lag(stack.kafka, group, topic)

        await eventually(lag, lambda n: n == 0, within=1200, interval=2.0)
        lap("consumed")
        await api_exact(client, bodies)
        lap("API equal to the hand recount")
    sizes = await document_sizes(stack, database)
    lap(f"(collections, documents, largest BSON): {sizes}")

    late = {**response(RESPONSES), "respondent": {"type": "cso", "country": "LK", "city": "Galle"}}
    await produce_fast(stack.kafka, topic, [late])
    async with serving(create_app(settings_for(AnalyticsSettings, environment))) as client:

        async def overview() -> dict[str, Any]:
            answer = await client.get("/v1/overview", params={"city_limit": 1}, headers=OPERATOR)
            return dict(answer.json())

        shown = await eventually(overview, lambda o: o["total"] == RESPONSES + 1, within=300)
    counted = await overall(stack, database)
    lap("a further response counted")
    verified = await asyncio.to_thread(run, environment, "verify")
    lap(verified)

    distinct = len({(b["respondent"]["country"], b["respondent"]["city"]) for b in bodies})
    assert distinct == CITIES
    assert all(largest < MONGODB_LIMIT // 4 for _, _, largest in sizes.values()), sizes
    assert "no drift" in verified
    assert shown["distinct_cities"] == distinct + 1
    assert len(shown["by_city"]) == 1
    assert counted["by_city"][city_key("LK", "Galle")] == 1
    assert counted["total"] == RESPONSES + 1


async def part_collections(client: Any, database: str) -> list[str]:
    names = await client[database].list_collection_names()
    return sorted(name for name in names if name.startswith(AGGREGATE_PARTS))


def positioned(first: int, count: int) -> list[Positioned]:
    """`count` responses from number `first` on, spread over three partitions in order."""
    return [
        Positioned(SurveyResponse.model_validate(response(n)), n % 3, n // 3)
        for n in range(first, first + count)
    ]


async def test_rebuild_cities_over_generations_exact_and_writers_race_exactly(
    stack: Stack, run_id: str
) -> None:
    client = mongo.new_client(stack.mongodb_url)
    database = f"test_{run_id}"
    environment = stack.environment(run_id)
    store = AnalyticsStore(client[database])
    try:
        # 4,000 cities in batches of 400: compactions, deltas appended and merged, generations.
        for first in range(0, 4000, 400):
            await store.apply(await store.record(positioned(first, 400)))
        before = {key: flatten(doc) for key, doc in (await store.aggregates()).items()}
        generations = await part_collections(client, database)

        rebuilt = await asyncio.to_thread(run, environment, "rebuild")
        after = {key: flatten(doc) for key, doc in (await store.aggregates()).items()}

        # Two writers at once: a consumer, and a zombie that read the same records from the same
        # committed offsets before a rebalance, fewer of them.
        other = AnalyticsStore(client[database])
        for first in range(4000, 6000, 500):
            batch = positioned(first, 500)
            await asyncio.gather(
                store.apply(await store.record(batch)),
                other.apply(await other.record(batch[:300])),
            )
        verified = await asyncio.to_thread(run, environment, "verify")
        final = {key: flatten(doc) for key, doc in (await store.aggregates()).items()}
        recount = await store.recount()
        # Superseded generations are dropped behind the batches: wait for those drops.
        await asyncio.gather(store.retired(), other.retired())
        left = await part_collections(client, database)
    finally:
        await client.drop_database(database)
        await client.close()

    assert "rebuilt" in rebuilt
    assert after == before
    assert before == {key: flatten(nest(counters)) for key, counters in recount_of(4000).items()}
    assert "no drift" in verified, verified
    assert final == {key: flatten(nest(counters)) for key, counters in recount.items()}
    assert final["all"]["total"] == 6000
    assert len(final["all"]) > 6000  # every city a counter of its own
    assert len(generations) >= 7  # at least one generation per document: 6 surveys and all
    assert len(left) <= 2 * 7  # superseded generations dropped


def recount_of(count: int) -> dict[str, Counter[str]]:
    return increments(SurveyResponse.model_validate(response(n)) for n in range(count))


async def test_cities_held_inline_by_previous_release_moved_to_parts(
    stack: Stack, run_id: str
) -> None:
    client = mongo.new_client(stack.mongodb_url)
    database = f"test_{run_id}"
    environment = stack.environment(run_id)
    store = AnalyticsStore(client[database])
    first = positioned(0, 1)[0]
    first_city = city_key(first.response.respondent.country, first.response.respondent.city)
    try:
        # What the release before parts wrote: versions with every city inline.
        for key, paths in increments([first.response]).items():
            await client[database][AGGREGATES].insert_one(
                {**nest(paths), "_id": f"{key}#000000000001", "key": key, "version": 1}
                | {"applied": {f"p{first.partition}": first.offset}}
            )
            await client[database][AGGREGATES].insert_one({"_id": key, "latest": 1})
        await store.record([first])
        await store.apply(await store.record(positioned(1, 50)))
        newest = await client[database][AGGREGATES].find_one({"_id": "all#000000000002"})
        counted = await overall(stack, database)
        verified = await asyncio.to_thread(run, environment, "verify")
    finally:
        await client.drop_database(database)
        await client.close()

    assert newest is not None and "by_city" not in newest
    assert counted["total"] == 51
    assert counted["by_city"][first_city] == 1
    assert len(counted["by_city"]) == 51
    assert "no drift" in verified, verified
