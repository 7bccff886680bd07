"""`make bench-analytics`: responses applied per second by the analytics consumer, against a
consume-only aiokafka loop over the same pre-filled topic, in the same run.

The topic holds `BENCH_EVENTS` (100,000) unique responses over 6 partitions. The baseline reads
them all with one consumer and does nothing else. The service's consumer (its FastStream app, in
this process) reads them from a fresh group and database, validates, stores raw, and applies the
aggregates; the clock stops when the overall total reaches the count. Targets: at least half the
consume-only rate, and at least 5,000 responses/s.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from bench.report import Measurement, Verdict, publish
from services.analytics.aggregates import OVERALL
from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from shared import mongo
from shared.kafka import ensure_topics, topics_with_dlq
from shared.kafka_security import kafka_security
from shared.taxonomy import load_taxonomy

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
TIME_LIMIT_SECONDS = float(os.environ.get("BENCH_TIME_LIMIT", "600"))
TARGET_RATIO = 0.5
TARGET_RATE = 5000.0
POLL_SECONDS = 1.0
COUNTRIES = ["VN", "ID", "KE", "BR", "LK", "PH", "IN", "MX", "SN", "EG"]


def response(rng: random.Random, number: int) -> dict[str, Any]:
    """A varied canonical response (many counters per document, as in the 2024 surveys)."""
    taxonomy = load_taxonomy()
    country = rng.choice(COUNTRIES)
    submitted = datetime(2024, 4, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(60 * 24 * 90))
    stamp = submitted.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "response_id": f"generic:bench-{number}",
        "survey_id": rng.choice(list(taxonomy.surveys)),
        "source": "generic",
        "submitted_at": stamp,
        "received_at": stamp,
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


async def fill(bootstrap: str, topic: str) -> None:
    """Produce `EVENTS` responses, keyed by response id."""
    rng = random.Random(2024)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, **kafka_security().client_options()
    )
    await producer.start()
    try:
        pending = []
        for number in range(EVENTS):
            body = response(rng, number)
            pending.append(
                await producer.send(
                    topic, json.dumps(body).encode(), key=body["response_id"].encode()
                )
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def consume_only(bootstrap: str, topic: str) -> float:
    """The baseline: records/s of a bare consumer reading the whole topic."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-baseline-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka_security().client_options(),
    )
    await consumer.start()
    try:
        read = 0
        started = time.perf_counter()
        while read < EVENTS:
            if time.perf_counter() - started > TIME_LIMIT_SECONDS:
                raise TimeoutError(f"baseline read {read} of {EVENTS}")
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            read += sum(len(records) for records in batch.values())
            await consumer.commit()  # as the service does, once per batch
        return EVENTS / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def analytics(settings: AnalyticsSettings) -> float:
    """Responses/s applied by the service's own consumer, from start to the last one counted."""
    client = mongo.new_client(settings.mongodb_url)
    store = AnalyticsStore(mongo.database(client, settings.mongodb_database))
    app = create_app(settings)
    try:
        started = time.perf_counter()
        async with app.router.lifespan_context(app):
            while True:
                overall = await store.aggregate(OVERALL)
                if overall is not None and overall.get("total", 0) >= EVENTS:
                    return EVENTS / (time.perf_counter() - started)
                if time.perf_counter() - started > TIME_LIMIT_SECONDS:
                    raise TimeoutError(f"analytics counted {overall and overall.get('total')}")
                # Each look reads the aggregates collection the consumer writes to (a scan on
                # FerretDB), so it looks once a second: at most 1% of a run of 100 s.
                await asyncio.sleep(POLL_SECONDS)
    finally:
        await client.drop_database(settings.mongodb_database)
        await client.close()


async def main() -> None:
    """Fill, measure both, report."""
    run = uuid.uuid4().hex[:8]
    # The benchmark serves no HTTP: any operator token will do when none is set.
    base = AnalyticsSettings(operator_token=SecretStr(os.environ.get("OPERATOR_TOKEN") or "bench"))
    topic = f"bench-{run}.survey.responses.v1"
    reviews = f"bench-{run}.survey.reviews.v1"
    settings = base.model_copy(
        update={
            "topic_responses": topic,
            "topic_reviews": reviews,
            "mongodb_database": f"bench_analytics_{run}",
            "analytics_group_id": f"bench-analytics-{run}",
        }
    )
    await ensure_topics(base.kafka_bootstrap_servers, topics_with_dlq(topic))
    print(f"filling {topic} with {EVENTS:,} responses…")
    await fill(base.kafka_bootstrap_servers, topic)
    try:
        baseline = await consume_only(base.kafka_bootstrap_servers, topic)
        print(f"consume-only: {baseline:,.0f} records/s")
        applied = await analytics(settings)
        print(f"analytics: {applied:,.0f} responses/s")
    finally:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=base.kafka_bootstrap_servers,
            **kafka_security(base).client_options(),
        )
        await admin.start()
        try:
            await admin.delete_topics(topics_with_dlq(topic, reviews))
        finally:
            await admin.close()
    ratio = applied / baseline
    publish(
        "analytics",
        f"analytics: {EVENTS:,} responses applied vs consumed only",
        [
            Measurement("consume-only aiokafka loop", baseline, "records/s"),
            Measurement("analytics consumer (applied)", applied, "responses/s"),
        ],
        [
            Verdict("ratio analytics / consume-only", ratio, TARGET_RATIO, ratio >= TARGET_RATIO),
            Verdict("responses applied per second", applied, TARGET_RATE, applied >= TARGET_RATE),
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
