"""`make bench-analytics`: responses applied per second by the analytics consumer, against two
baselines measured in the same run: a consume-only aiokafka loop over the same pre-filled topic,
and the database's own insert rate for the same documents.

The topic holds `BENCH_EVENTS` (100,000) unique responses over 6 partitions. The consume-only
baseline reads them all with one consumer and does nothing else. The insert baseline writes the
raw documents analytics keeps for those responses into a fresh collection with the indexes the
service keeps on its own (`Wiring.ensure_indexes`), and nothing else, as the consumer inserts
them: unordered `insert_many` of `RECORD_CHUNK` documents, up to `INSERTS_IN_FLIGHT` at once;
it runs before and after the service, which is held against the mean of the two.
The service's consumer (its FastStream app, in this process) reads them from a fresh group and
database, validates, stores raw, and applies the aggregates; the clock stops when the overall
total reaches the count.
Targets: at least 5,000 responses/s, and at least 0.6 of the database's insert rate.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.load import drop_database, with_random_secrets
from bench.report import Measurement, Section, Verdict, run_alone
from bench.topics import consume_only, fill
from services.analytics.aggregates import OVERALL, Positioned
from services.analytics.app import create_app
from services.analytics.consumer import INSERTS_IN_FLIGHT, RECORD_CHUNK
from services.analytics.documents import raw_document
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import RESPONSES
from services.analytics.wiring import wire
from shared import mongo
from shared.events import SurveyResponse
from shared.kafka import delete_topics, ensure_topics, topics_with_dlq
from shared.mongo import Document
from shared.taxonomy import load_taxonomy

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
QUICK_EVENTS = 5000
TIME_LIMIT_SECONDS = float(os.environ.get("BENCH_TIME_LIMIT", "600"))
TARGET_INSERT_RATIO = 0.6
TARGET_RATE = 5000.0
POLL_SECONDS = 1.0
# Near the end, the look that stops the clock comes at most this late (a look every second
# would add half a second on average to a run of some 20 s).
FINAL_POLL_SECONDS = 0.1
COUNTRIES = ["VN", "ID", "KE", "BR", "LK", "PH", "IN", "MX", "SN", "EG"]


def response(rng: random.Random, number: int, received: str | None = None) -> dict[str, Any]:
    """A varied canonical response (many counters per document, as in the 2024 surveys),
    received at `received` (else when submitted): the service's benchmarks give a recent time,
    so that it is stored whole as a live response is."""
    taxonomy = load_taxonomy()
    country = rng.choice(COUNTRIES)
    submitted = datetime(2024, 4, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(60 * 24 * 90))
    stamp = submitted.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "response_id": f"generic:bench-{number}",
        "survey_id": rng.choice(list(taxonomy.surveys)),
        "source": "generic",
        "submitted_at": stamp,
        "received_at": received or stamp,
        "respondent": {
            "type": rng.choice(list(taxonomy.respondent_types)),
            "organization": f"Institution {rng.randrange(500)}",
            "country": country,
            "city": f"City {country}-{rng.randrange(40)}",
        },
        "development_priorities": rng.sample(list(taxonomy.sdgs), rng.randint(1, 4)),
        "capacity_needs": rng.sample(list(taxonomy.themes), rng.randint(1, 4)),
        "collaboration_interests": rng.sample(sorted(taxonomy.interest_codes), rng.randint(1, 4)),
        "answers": {"comments": "kept for analysis"},
    }


def responses(events: int) -> list[dict[str, Any]]:
    """The run's responses, the same every run but for the time they were received (now)."""
    rng = random.Random(2024)
    received = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [response(rng, number, received) for number in range(events)]


async def insert_only(settings: AnalyticsSettings, bodies: list[dict[str, Any]]) -> float:
    """The database baseline: raw documents/s of unordered `insert_many` into a fresh collection
    with the service's indexes (each insert updates them, in the service as here), as the
    consumer inserts: `RECORD_CHUNK` at once, `INSERTS_IN_FLIGHT` inserts under way (measured
    on 2 cores, the database takes 35% more documents/s from two inserts at once than from one
    after the other)."""
    documents = [
        # As the consumer stores them: counted through their states (`tracked`).
        raw_document(
            Positioned(SurveyResponse.model_validate(body), number % 6, number), tracked=True
        )
        for number, body in enumerate(bodies)
    ]
    name = f"{settings.mongodb_database}_inserts"
    wiring = wire(settings.model_copy(update={"mongodb_database": name}))
    database = mongo.database(wiring.client, name)
    under_way = asyncio.Semaphore(INSERTS_IN_FLIGHT)

    async def insert(chunk: list[Document]) -> None:
        async with under_way:
            await database[RESPONSES].insert_many(chunk, ordered=False)

    try:
        await wiring.ensure_indexes()
        started = time.perf_counter()
        chunks = range(0, len(documents), RECORD_CHUNK)
        await asyncio.gather(*(insert(documents[at : at + RECORD_CHUNK]) for at in chunks))
        return len(documents) / (time.perf_counter() - started)
    finally:
        await wiring.client.drop_database(database.name)
        await wiring.close()


class NotCounted(TimeoutError):
    """Analytics had not counted every event when the time limit ran out (`total`: how many)."""

    def __init__(self, total: int, events: int) -> None:
        super().__init__(f"{total:,} of {events:,} counted in the {TIME_LIMIT_SECONDS:.0f} s limit")
        self.total = total


async def counted(settings: AnalyticsSettings, events: int) -> None:
    """Return once the overall total in the settings' database reaches `events`; `NotCounted`
    after `TIME_LIMIT_SECONDS`."""
    wiring = wire(settings)
    deadline = time.perf_counter() + TIME_LIMIT_SECONDS
    # The rate is taken between two looks that saw the total grow: not from the first look,
    # which may find responses counted long before (the growth bench's catch-up).
    rate, last = 0.0, None
    try:
        while True:
            overall = await wiring.store.aggregate(OVERALL)
            total = overall.get("total", 0) if overall else 0
            now = time.perf_counter()
            if total >= events:
                return
            if now > deadline:
                raise NotCounted(int(total), events)
            if last is None:
                last = (now, total)
            elif total > last[1]:
                rate, last = (total - last[1]) / (now - last[0]), (now, total)
            # Each look reads the aggregates collection the consumer writes to (a scan on
            # FerretDB), so it looks once a second, and more often only once the rate so far
            # says the last response is about to be counted.
            expected = last[0] + (events - last[1]) / rate if rate else now + POLL_SECONDS
            await asyncio.sleep(min(POLL_SECONDS, max(FINAL_POLL_SECONDS, expected - now)))
    finally:
        await wiring.close()


async def analytics(settings: AnalyticsSettings, events: int) -> float:
    """Responses/s applied by the service's own consumer, from start to the last one counted."""
    app = create_app(settings)
    try:
        started = time.perf_counter()
        async with app.router.lifespan_context(app):
            await counted(settings, events)
            return events / (time.perf_counter() - started)
    finally:
        await drop_database(settings.mongodb_database)


async def measure(quick: bool = False) -> Section:
    """Fill a topic, measure the two baselines and the service, hold the service against them.
    `quick`: a short smoke run (a few thousand responses)."""
    events = QUICK_EVENTS if quick else EVENTS
    run = uuid.uuid4().hex[:8]
    # The benchmark serves no HTTP: random values for the secrets the service requires.
    base = with_random_secrets(AnalyticsSettings)
    topic = f"bench-{run}.survey.responses.v1"
    reviews = f"bench-{run}.survey.reviews.v1"
    settings = base.model_copy(
        update={
            "topic_responses": topic,
            "topic_reviews": reviews,
            "topic_erasures": f"bench-{run}.privacy.erasures.v1",
            "mongodb_database": f"bench_analytics_{run}",
            "analytics_group_id": f"bench-analytics-{run}",
        }
    )
    bodies = responses(events)
    await ensure_topics(base.kafka_bootstrap_servers, topics_with_dlq(topic))
    print(f"filling {topic} with {events:,} responses…")
    await fill(base.kafka_bootstrap_servers, topic, bodies)
    try:
        before = await insert_only(settings, bodies)
        print(f"insert-only: {before:,.0f} documents/s")
        baseline = await consume_only(
            base.kafka_bootstrap_servers, topic, events, TIME_LIMIT_SECONDS
        )
        print(f"consume-only: {baseline:,.0f} records/s")
        applied = await analytics(settings, events)
        print(f"analytics: {applied:,.0f} responses/s")
        # The machine's speed drifts within minutes: the database's rate is taken on both
        # sides of the service's run, and the service is held against their mean.
        after = await insert_only(settings, bodies)
        print(f"insert-only again: {after:,.0f} documents/s")
    finally:
        # Its own topics, the service's reviews and erasures topics included.
        await delete_topics(base.kafka_bootstrap_servers, f"bench-{run}.")
    inserted = (before + after) / 2
    to_inserts = applied / inserted
    return Section(
        "analytics",
        f"Analytics: {events:,} responses applied vs inserted only and consumed only",
        [
            Measurement("database insert_many of the same documents", inserted, "documents/s"),
            Measurement("consume-only aiokafka loop", baseline, "records/s"),
            Measurement("analytics consumer (applied)", applied, "responses/s"),
        ],
        [
            Verdict("responses applied per second", applied, TARGET_RATE, applied >= TARGET_RATE),
            Verdict(
                "analytics / database insert rate",
                to_inserts,
                TARGET_INSERT_RATIO,
                to_inserts >= TARGET_INSERT_RATIO,
            ),
        ],
        [
            f"analytics / consume-only: {applied / baseline:.3f}",
            f"database insert rate before and after the service's run: {before:,.0f} and "
            f"{after:,.0f} documents/s (the figure above is their mean)",
        ],
    )


def section(quick: bool = False) -> Section:
    """`measure` in its own event loop."""
    return asyncio.run(measure(quick))


def main() -> None:
    """`python -m bench.analytics`."""
    run_alone(section)


if __name__ == "__main__":
    main()
