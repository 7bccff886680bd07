"""The SIGKILL proof for corrections: new responses, revisions (some arriving out of order,
some before the response's first revision), duplicates, reviews and retractions (in no
particular order of their `order`) interleaved with SIGKILLs of analytics processes that hold
applied but uncommitted work. Afterwards every counter of every aggregate document equals a hand
recount of the newest revision of every response that is not rejected or retracted, the API
shows the same numbers, and `verify` finds no drift.

The randomness is seeded; the seed is printed (`pytest -s`) and
`ANALYTICS_REVIEW_CHAOS_SEED=<seed>` replays a run. The machinery (processes, kills proven to hit
work in progress, hand recount) is the one of `test_analytics_chaos.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.analytics import maintenance
from services.analytics.audit import flatten
from services.analytics.store import AnalyticsStore
from shared import mongo
from shared.kafka import consumer_lag, ensure_topics
from shared.kafka_security import kafka_security
from tests.integration.test_analytics_chaos import Fleet, drained, hand_recount
from tests.recount import random_response
from tests.support import OPERATOR, Stack, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def fleet(stack: Stack, run_id: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    """Analytics processes of this test, killed at its end, with both of its topics."""
    # As in `test_analytics_chaos`: applied but uncommitted work lasts a moment longer than on
    # its own, so that a kill lands in it however quickly a batch is applied and committed.
    environment = stack.environment(run_id) | {"ANALYTICS_COMMIT_DELAY_SECONDS": "0.3"}
    await ensure_topics(stack.kafka, [environment["TOPIC_RESPONSES"], environment["TOPIC_REVIEWS"]])
    client = mongo.new_client(stack.mongodb_url)
    store = AnalyticsStore(mongo.database(client, environment["MONGODB_DATABASE"]))
    fleet = Fleet(environment, tmp_path, store)
    try:
        yield fleet
    finally:
        fleet.stop_all()
        await client.drop_database(environment["MONGODB_DATABASE"])
        await client.close()


STATUSES = ["approved", "rejected", "pending", "retracted"]
WEIGHTS = [4, 3, 1, 2]


def seeded() -> random.Random:
    seed = int(
        os.environ.get("ANALYTICS_REVIEW_CHAOS_SEED", random.SystemRandom().randrange(2**32))
    )
    print(f"ANALYTICS_REVIEW_CHAOS_SEED={seed}")
    return random.Random(seed)


Record = tuple[str, dict[str, Any]]  # ("response" | "review", value)


def history(rng: random.Random, prefix: str, count: int) -> list[Record]:
    """`count` responses with their revisions, duplicates, reviews and retractions, in the
    order they are produced: revisions mostly after the first one (in any order among
    themselves, a tenth anywhere, even first), reviews in an order that is not their `order`."""
    placed: list[tuple[float, int, Record]] = []
    serial = 0

    def place(at: float, record: Record) -> None:
        nonlocal serial
        serial += 1
        placed.append((at, serial, record))

    for index in range(count):
        body = random_response(rng, f"generic:{prefix}-{index}")
        place(float(index), ("response", body))
        bodies = [body]
        for revision in range(2, 2 + (rng.randint(1, 3) if rng.random() < 0.4 else 0)):
            edited = {**random_response(rng, body["response_id"]), "revision": revision}
            edited["survey_id"] = body["survey_id"]
            bodies.append(edited)
            anywhere = rng.random() < 0.1
            place(
                rng.uniform(-1, count) if anywhere else rng.uniform(index, count + 5),
                ("response", edited),
            )
        if rng.random() < 0.2:  # a platform's re-send of one of them, later
            place(rng.uniform(index, count + 10), ("response", rng.choice(bodies)))
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 3)):
                review = {
                    "review_id": f"rv{rng.randrange(10**9)}",
                    "survey_id": body["survey_id"],
                    "response_id": body["response_id"],
                    "status": rng.choices(STATUSES, WEIGHTS)[0],
                    "note": "",
                    "reviewed_at": "2024-06-01T00:00:00Z",
                    "order": rng.randrange(10**12),
                }
                place(rng.uniform(index - 5, count + 10), ("review", review))
                if rng.random() < 0.2:
                    place(rng.uniform(index, count + 10), ("review", review))  # re-read
    return [record for _, _, record in sorted(placed, key=lambda p: (p[0], p[1]))]


def expected_counts(records: list[Record]) -> dict[str, Counter[str]]:
    """Every counter of every document, counted here from the produced data: the newest
    revision of each response (the first message of a revision is the one that counts), the
    review with the highest (order, review_id), counted unless rejected or retracted."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, value in records:
        key = (value["survey_id"], value["response_id"])
        if kind == "response":
            if key not in newest or value.get("revision", 1) > newest[key].get("revision", 1):
                newest[key] = value
        elif key not in latest or (value["order"], value["review_id"]) > (
            latest[key]["order"],
            latest[key]["review_id"],
        ):
            latest[key] = value
    status = {key: latest[key]["status"] if key in latest else "pending" for key in newest}
    counted = [body for key, body in newest.items() if status[key] in ("pending", "approved")]
    documents = hand_recount(counted)
    for key, review in status.items():
        if review in ("approved", "rejected"):
            for document in (f"survey:{key[0]}", "all"):
                documents.setdefault(document, Counter())[f"by_review.{review}"] += 1
    return documents


async def produce(bootstrap: str, topics: dict[str, str], records: list[Record]) -> None:
    """Responses keyed by response id, reviews by `<survey_id>/<response_id>`, in order."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", **kafka_security().client_options()
    )
    await producer.start()
    try:
        sent = []
        for kind, value in records:
            key = (
                value["response_id"]
                if kind == "response"
                else f"{value['survey_id']}/{value['response_id']}"
            )
            sent.append(
                await producer.send(topics[kind], json.dumps(value).encode(), key=key.encode())
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@pytest.mark.fault
@pytest.mark.timeout(900)
async def test_sigkill_with_revisions_and_reviews_counts_exactly(
    stack: Stack, fleet: Fleet
) -> None:
    rng = seeded()
    environment = fleet.environment
    topics = {"response": environment["TOPIC_RESPONSES"], "review": environment["TOPIC_REVIEWS"]}
    records = history(rng, "rc", 700)
    group = environment["ANALYTICS_GROUP_ID"]
    chunks = [records[i : i + 250] for i in range(0, len(records), 250)]
    extra = 0

    async def feed() -> None:
        nonlocal extra
        if chunks:
            await produce(stack.kafka, topics, chunks.pop(0))
            return
        fresh = history(rng, f"rc-extra{extra}", 100)
        extra += 1
        records.extend(fresh)
        await produce(stack.kafka, topics, fresh)

    for step in range(6):
        while len(fleet.running) < 1 + step % 2:
            fleet.start(ANALYTICS_BATCH_SIZE=str(rng.choice([50, 200])))
        await feed()
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        for process in rng.sample(fleet.running, rng.randint(1, len(fleet.running))):
            await fleet.kill(process, stack.kafka, feed)
    for chunk in chunks:
        await produce(stack.kafka, topics, chunk)
    survivor = fleet.start()
    await asyncio.to_thread(survivor.wait_ready)
    await drained(stack, fleet, group)

    async def reviews_lag() -> int:
        return await consumer_lag(stack.kafka, f"{group}.reviews", topics["review"])

    await eventually(reviews_lag, lambda n: n == 0, within=240, interval=1.0)

    assert fleet.kills >= 6
    assert all(a >= c for caught in fleet.caught for a, c in caught.held.values())
    expected = expected_counts(records)
    client = mongo.new_client(stack.mongodb_url)
    try:
        store = AnalyticsStore(mongo.database(client, environment["MONGODB_DATABASE"]))
        running = {key: flatten(doc) for key, doc in (await store.aggregates()).items()}
        audit = await maintenance.verify(store)
    finally:
        await client.close()
    assert audit.drifts == [], [str(d) for d in audit.drifts[:20]]
    for key, counters in expected.items():
        assert +running[key] == +counters, key
    assert all(n >= 0 for counters in running.values() for n in counters.values())

    async with httpx.AsyncClient(base_url=survivor.url, timeout=30) as http:
        overview = (await http.get("/v1/overview", headers=OPERATOR)).json()
        assert overview["total"] == expected["all"]["total"]
        assert overview["by_review"] == {
            "pending": expected["all"]["total"] - expected["all"]["by_review.approved"],
            "approved": expected["all"]["by_review.approved"],
            "rejected": expected["all"]["by_review.rejected"],
        }
        for key, counters in expected.items():
            if key == "all":
                continue
            summary = (
                await http.get(
                    f"/v1/surveys/{key.removeprefix('survey:')}/summary", headers=OPERATOR
                )
            ).json()
            by_country = {
                path.removeprefix("by_country."): n
                for path, n in counters.items()
                if path.startswith("by_country.") and n
            }
            assert (summary["total"], summary["by_country"]) == (counters["total"], by_country)
        approved = (
            await http.get("/v1/overview", params={"review": "approved"}, headers=OPERATOR)
        ).json()
        assert approved["total"] == expected["all"]["by_review.approved"]
    print(f"exact: {len(expected)} documents, {fleet.kills} kills, {len(records)} messages")
