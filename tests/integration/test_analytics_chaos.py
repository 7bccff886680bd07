"""The SIGKILL proof: real analytics processes killed at random points, restarted, scaled out,
and every counter of every aggregate document still equals a hand recount of the produced data,
as do the HTTP API's numbers (per survey and overall, filtered or not), and `verify` exits 0.

Each kill is shown to hit a process holding applied but uncommitted work
(tests/work_in_progress.py): the random point is where the test starts looking, and the process
dies at the first moment after it that it has applied records beyond its group's committed offsets.

The randomness is seeded; the seed is printed (`pytest -s`) and `ANALYTICS_CHAOS_SEED=<seed>`
replays a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.analytics import maintenance
from services.analytics.audit import flatten
from services.analytics.store import AnalyticsStore
from shared import mongo
from shared.kafka import consumer_lag, ensure_topics
from shared.kafka_security import kafka_security
from shared.taxonomy import load_taxonomy
from tests.recount import assert_api_exact, random_response, unique_responses
from tests.support import (
    ServiceProcess,
    Stack,
    eventually,
    start_service,
)
from tests.work_in_progress import Catcher, Caught

pytestmark = pytest.mark.integration


def seeded() -> random.Random:
    seed = int(os.environ.get("ANALYTICS_CHAOS_SEED", random.SystemRandom().randrange(2**32)))
    print(f"ANALYTICS_CHAOS_SEED={seed}")
    return random.Random(seed)


def topic_records(rng: random.Random, unique: int, duplicates: int) -> list[dict[str, Any]]:
    """`unique` responses in order, and `duplicates` re-sends of some of them at later points;
    a third of the re-sends carry other content (a platform re-sending an edited answer), which
    must not count: the first message of a response is the one that counts."""
    placed: list[tuple[float, int, dict[str, Any]]] = []
    originals = [random_response(rng, f"generic:chaos-{n}") for n in range(unique)]
    for index, body in enumerate(originals):
        placed.append((float(index), 0, body))
    for copy_number in range(duplicates):
        index = rng.randrange(unique)
        original = originals[index]
        resent = original
        if rng.random() < 1 / 3:
            edited = random_response(rng, original["response_id"])
            resent = {**edited, "survey_id": original["survey_id"]}
        placed.append((rng.uniform(index + 0.5, unique + 10), copy_number + 1, resent))
    return [body for _, _, body in sorted(placed, key=lambda p: (p[0], p[1]))]


def hand_recount(records: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """Every counter of every document, counted here from the produced data, independently of
    the service's code: the first record of each response id counts, nothing else."""
    themes = set(load_taxonomy().themes)
    documents: dict[str, Counter[str]] = {}
    for body in unique_responses(records):
        who = body["respondent"]
        country, kind = who["country"], who["type"]
        counters = Counter(
            [
                "total",
                f"by_respondent_type.{kind}",
                f"by_country.{country}",
                f"by_city.{country}|{who['city']}",
                f"by_day.{body['submitted_at'][:10]}",
            ]
        )
        for code in body["development_priorities"]:
            counters[f"development_priorities.{code}"] += 1
            counters[f"country_priorities.{country}.{code}"] += 1
        for code in body["capacity_needs"]:
            counters[f"capacity_needs.{code}"] += 1
        for code in body["collaboration_interests"]:
            counters[f"collaboration_interests.{code}"] += 1
        for code in {*body["capacity_needs"], *body["collaboration_interests"]} & themes:
            counters[f"type_themes.{kind}.{code}"] += 1
        documents.setdefault(f"survey:{body['survey_id']}", Counter()).update(counters)
        overall = documents.setdefault("all", Counter())
        overall.update(counters)
        overall[f"surveys.{body['survey_id']}"] += 1
    return documents


async def produce_all(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    """Keyed by response id, so every copy of a response lands in the same partition, in order."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", **kafka_security().client_options()
    )
    await producer.start()
    try:
        sent = [
            await producer.send(topic, json.dumps(body).encode(), key=body["response_id"].encode())
            for body in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


class Fleet:
    """Analytics processes of one test; whatever is left is killed at the end."""

    def __init__(self, environment: dict[str, str], log_dir: Path, store: AnalyticsStore) -> None:
        self.environment = environment
        self.log_dir = log_dir
        self.store = store
        self.running: list[ServiceProcess] = []
        self.groups: dict[int, str] = {}  # pid -> its consumer group
        self.kills = 0
        self.caught: list[Caught] = []

    def start(self, **overrides: str) -> ServiceProcess:
        environment = {**self.environment, **overrides}
        process = start_service("analytics", environment, self.log_dir)
        self.running.append(process)
        self.groups[process.process.pid] = environment["ANALYTICS_GROUP_ID"]
        return process

    async def kill(
        self,
        process: ServiceProcess,
        bootstrap: str,
        feed: Callable[[], Awaitable[None]] | None = None,
    ) -> Caught:
        """SIGKILL `process` once it holds applied but uncommitted work of its own."""
        group = self.groups[process.process.pid]
        replay = group != self.environment["ANALYTICS_GROUP_ID"]
        topic = self.environment["TOPIC_RESPONSES"]
        catcher = Catcher(bootstrap, group, topic, self.store, replay=replay)
        caught = await catcher.catch(process, feed=feed)
        self.running.remove(process)
        self.kills += 1
        self.caught.append(caught)
        print(f"killed {caught}")
        return caught

    def stop_all(self) -> None:
        for process in list(self.running):
            if process.process.poll() is None:
                process.process.send_signal(signal.SIGKILL)
                process.process.wait(timeout=10)
            self.running.remove(process)


@pytest.fixture
async def fleet(stack: Stack, run_id: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    # Applied but uncommitted work lasts a moment longer than on its own, so that a kill lands
    # in it even when a quiet machine applies and commits a batch within a few milliseconds.
    environment = stack.environment(run_id) | {"ANALYTICS_COMMIT_DELAY_SECONDS": "0.3"}
    await ensure_topics(stack.kafka, [environment["TOPIC_RESPONSES"]])
    client = mongo.new_client(stack.mongodb_url)
    store = AnalyticsStore(mongo.database(client, environment["MONGODB_DATABASE"]))
    fleet = Fleet(environment, tmp_path, store)
    try:
        yield fleet
    finally:
        fleet.stop_all()
        await client.drop_database(environment["MONGODB_DATABASE"])
        await client.close()


async def drained(stack: Stack, fleet: Fleet, group: str) -> None:
    """Wait until `group` has committed every record of the topic (so all of it is applied)."""
    topic = fleet.environment["TOPIC_RESPONSES"]

    async def lag() -> int:
        return await consumer_lag(stack.kafka, group, topic)

    await eventually(lag, lambda n: n == 0, within=240, interval=1.0)


async def assert_exact(stack: Stack, fleet: Fleet, expected: dict[str, Counter[str]]) -> None:
    """Every counter of every document: running == recount from raw == hand recount."""
    client = mongo.new_client(stack.mongodb_url)
    try:
        store = AnalyticsStore(mongo.database(client, fleet.environment["MONGODB_DATABASE"]))
        running = {key: flatten(doc) for key, doc in (await store.aggregates()).items()}
        audit = await maintenance.verify(store)
        recount = await store.recount()
    finally:
        await client.close()
    assert audit.drifts == [], [str(d) for d in audit.drifts[:20]]
    assert set(running) == set(expected)
    for key, counters in expected.items():
        assert running[key] == counters, key
        assert recount[key] == counters, key
    compared = sum(len(counters) for counters in expected.values())
    print(f"exact: {len(expected)} documents, {compared} counters")


@pytest.mark.fault
@pytest.mark.timeout(900)
async def test_sigkill_at_random_points_counts_exactly(stack: Stack, fleet: Fleet) -> None:
    rng = seeded()
    records = topic_records(rng, unique=2500, duplicates=900)
    topic = fleet.environment["TOPIC_RESPONSES"]
    group = fleet.environment["ANALYTICS_GROUP_ID"]
    chunks = [records[i : i + 300] for i in range(0, len(records), 300)]
    extra = 0

    async def feed() -> None:
        """More work for a group that caught up before the kill: the next chunk, or (all of
        them produced) new responses of their own."""
        nonlocal extra
        if chunks:
            await produce_all(stack.kafka, topic, chunks.pop(0))
            return
        fresh = [random_response(rng, f"generic:chaos-extra-{extra + n}") for n in range(300)]
        extra += len(fresh)
        records.extend(fresh)
        await produce_all(stack.kafka, topic, fresh)

    for step in range(8):
        # Odd steps run two processes of the group at once, so partitions move between them.
        while len(fleet.running) < 1 + step % 2:
            fleet.start(ANALYTICS_BATCH_SIZE=str(rng.choice([50, 200, 500])))
        await feed()
        await asyncio.sleep(rng.uniform(0.5, 4.0))
        for process in rng.sample(fleet.running, rng.randint(1, len(fleet.running))):
            await fleet.kill(process, stack.kafka, feed)
    for chunk in chunks:
        await produce_all(stack.kafka, topic, chunk)
    survivor = fleet.start()
    await asyncio.to_thread(survivor.wait_ready)
    await drained(stack, fleet, group)

    assert fleet.kills >= 8
    # Each kill hit applied but uncommitted work: watermarks at or beyond the committed offsets.
    assert len(fleet.caught) == fleet.kills
    assert all(a >= c for caught in fleet.caught for a, c in caught.held.values())
    expected = hand_recount(records)
    assert expected["all"]["total"] == 2500 + extra
    await assert_exact(stack, fleet, expected)
    await assert_api_exact(fleet.environment, survivor, records, rng)

    # A replay of the whole topic by another group, itself killed once mid-replay (committing
    # its way through records applied before, not all committed), changes nothing. Small
    # batches: the replay lasts long enough to be caught in the middle of it.
    replay_group = f"{group}-replay"
    replayer = fleet.start(ANALYTICS_GROUP_ID=replay_group, ANALYTICS_BATCH_SIZE="50")
    await asyncio.sleep(rng.uniform(0.5, 3.0))
    await fleet.kill(replayer, stack.kafka)
    replayer = fleet.start(ANALYTICS_GROUP_ID=replay_group)
    await asyncio.to_thread(replayer.wait_ready)
    await drained(stack, fleet, replay_group)
    await assert_exact(stack, fleet, expected)
    await assert_api_exact(fleet.environment, replayer, records, rng)


@pytest.mark.timeout(600)
async def test_scale_out_three_processes_count_exactly(stack: Stack, fleet: Fleet) -> None:
    rng = seeded()
    records = topic_records(rng, unique=1500, duplicates=500)
    processes = [fleet.start() for _ in range(3)]
    for process in processes:
        await asyncio.to_thread(process.wait_ready)

    await produce_all(stack.kafka, fleet.environment["TOPIC_RESPONSES"], records)
    await drained(stack, fleet, fleet.environment["ANALYTICS_GROUP_ID"])

    assert all(process.process.poll() is None for process in processes)
    await assert_exact(stack, fleet, hand_recount(records))
    await assert_api_exact(fleet.environment, processes[-1], records, rng)
