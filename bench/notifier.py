"""`make bench-notifier`: matching one pilot against 1,000, 10,000 and 100,000 focal points, and
emails per second to a local SMTP server, each against a baseline measured in the same run.

Matching: the pure match over the compact index, and the store query the notifier runs (read the
match index, match here), against the per-document query on the `codes` index (what a server
with a real multikey index answers well, and a scanning server does not). Emails: the notifier's
mailer (render, then send over `EMAIL_CONNECTIONS` reused connections side by side, and over
one) against one new connection per message, all to an aiosmtpd server of this run, in its own
process on a free port. Bounded in count; loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosmtplib

from bench.analytics import response
from bench.load import free_port, with_random_secrets
from bench.report import Measurement, Section, Verdict, run_alone
from bench.topics import consume_only, fill
from services.notifier import emails
from services.notifier.app import create_app
from services.notifier.deliveries import DELIVERIES
from services.notifier.matching import (
    BUCKETS,
    Bucket,
    IndexEntry,
    bucket_of,
    candidates_query,
    encode_bucket,
    match,
)
from services.notifier.registry import FOCAL_POINTS, MATCH_INDEX
from services.notifier.settings import NotifierSettings
from services.notifier.wiring import wire
from shared import mongo
from shared.events import PilotAnnounced
from shared.kafka import consumer_lag, delete_topics, ensure_topics, topics_with_dlq
from shared.personal import EmailKeys
from shared.taxonomy import load_taxonomy

SIZES = [int(n) for n in os.environ.get("BENCH_NOTIFIER_SIZES", "1000,10000,100000").split(",")]
QUICK_SIZES = [1000, 10000]
EMAILS = int(os.environ.get("BENCH_NOTIFIER_EMAILS", "2000"))
QUICK_EMAILS = 300
REGISTRY = int(os.environ.get("BENCH_REGISTRY", "20000"))
QUICK_REGISTRY = 200
REGISTRY_TARGET_PER_SECOND = 2000.0
REGISTRY_TIME_LIMIT_SECONDS = 300.0  # the rate over this long when it cannot finish
LAG_POLL_SECONDS = 0.1
MATCH_TARGET_SECONDS = 0.25  # at 100,000 focal points, the database read included
EMAILS_TARGET_PER_SECOND = 1000.0
EMAIL_CONNECTIONS = 4  # SMTP_CONNECTIONS of the mailer measured against the target
COUNTRIES = ["VN", "ID", "LK", "KE", "BR", "IN", "PH", "NG", "EG", "CO", "MX", "BD"]
PILOT = PilotAnnounced.model_validate(
    {
        "pilot_id": "bench-pilot",
        "title": "Flood early warning for coastal districts",
        "summary": "Sirens and SMS alerts for low-lying districts.",
        "themes": ["climate-resilience", "disaster-risk-reduction"],
        "sdgs": ["sdg-13"],
        "eligible_countries": ["VN", "ID", "LK", "KE", "BR", "IN"],
        "lead_agency": "UNOSSC",
        "apply_by": "2099-03-31",
        "url": "https://example.org/pilots/007",
    }
)


def focal_points(
    start: int, stop: int, rng: random.Random, keys: EmailKeys
) -> list[dict[str, Any]]:
    """Registry records as the notifier keeps them, with 2 to 6 codes each."""
    taxonomy = load_taxonomy()
    codes = [*taxonomy.themes, *taxonomy.sdgs, *taxonomy.modalities]
    now = datetime.now(UTC)
    return [
        {
            "_id": keys.key(f"fp{n}@bench.example.org"),
            "email": f"fp{n}@bench.example.org",
            "name": f"Focal Point {n}",
            "language": rng.choice(["en", "fr", "es", "ar", "zh", "ru"]),
            "consent": True,
            "unsubscribed": False,
            "country": rng.choice(COUNTRIES),
            "city": "City",
            "codes": rng.sample(codes, rng.randint(2, 6)),
            "response_id": f"bench:{n}",
            "submitted_at": now,
            "revision": 1,
        }
        for n in range(start, stop)
    ]


def index_buckets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The match index of `records`, as the registry writes it."""
    buckets: list[dict[str, IndexEntry]] = [{} for _ in range(BUCKETS)]
    for r in records:
        entry = IndexEntry(r["_id"], r["revision"], r["country"], tuple(r["codes"]))
        buckets[bucket_of(r["_id"])][r["_id"]] = entry
    return [
        {"_id": f"bucket-{n}", "version": 1, "data": encode_bucket(entries)}
        for n, entries in enumerate(buckets)
    ]


async def timed(work: Callable[[], Awaitable[Any]], rounds: int) -> tuple[float, Any]:
    """Median seconds of `rounds` runs, and the last result."""
    durations, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = await work()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), result


async def bench_matching(url: str, sizes: list[int]) -> tuple[list[Measurement], list[Verdict]]:
    """Seed growing registries and time the three ways of matching at each size."""
    name = f"bench_notifier_{uuid.uuid4().hex[:8]}"
    # The notifier's own adapters, with the bench's own database and keys: records are keyed by
    # the keyed hash of the address, as the notifier's are.
    wiring = wire(with_random_secrets(NotifierSettings, mongodb_url=url, mongodb_database=name))
    db, registry, keys = wiring.db, wiring.registry, wiring.settings.email_keys()
    await registry.ensure_indexes()
    rng = random.Random(20240502)
    records: list[dict[str, Any]] = []
    measurements: list[Measurement] = []
    verdicts: list[Verdict] = []
    try:
        for size in sizes:
            added = focal_points(len(records), size, rng, keys)
            records += added
            print(f"seeding {size:,} focal points ...", flush=True)
            for start in range(0, len(added), 5000):
                await db[FOCAL_POINTS].insert_many(added[start : start + 5000], ordered=False)
            await db[MATCH_INDEX].delete_many({})
            await db[MATCH_INDEX].insert_many(index_buckets(records))
            buckets = [d["data"] async for d in db[MATCH_INDEX].find({}, {"data": True})]

            async def pure(buckets: list[Bucket] = buckets) -> list[tuple[str, list[str]]]:
                return match(PILOT, buckets)

            async def per_document() -> list[str]:
                return [r.key async for r in registry.matching(candidates_query(PILOT))]

            pure_s, _ = await timed(pure, 5)
            ours_s, ours = await timed(lambda: registry.candidates(PILOT), 3)
            base_s, base = await timed(per_document, 1)
            if sorted(key for key, _ in ours) != sorted(base):
                raise AssertionError(f"the match index and the query disagree at {size:,}")
            print(
                f"{size:>7,} focal points, {len(ours):,} matched: pure {pure_s:.3f} s, "
                f"store {ours_s:.3f} s, per-document query {base_s:.3f} s "
                f"(x{base_s / ours_s:,.1f})",
                flush=True,
            )
            measurements += [
                Measurement(f"pure match, {size:,}", pure_s * 1000, "ms"),
                Measurement(f"store query (index), {size:,}", ours_s * 1000, "ms"),
                Measurement(f"per-document query, {size:,}", base_s * 1000, "ms"),
            ]
            verdicts.append(
                Verdict(
                    f"speed-up over the per-document query at {size:,}",
                    base_s / ours_s,
                    1.0,
                    base_s / ours_s >= 1.0,
                )
            )
        largest = sizes[-1]
        verdicts.append(
            Verdict(
                f"store query seconds at {largest:,} (lower is better)",
                ours_s,
                MATCH_TARGET_SECONDS,
                ours_s < MATCH_TARGET_SECONDS,
            )
        )
    finally:
        await wiring.client.drop_database(name)
        await wiring.close()
    return measurements, verdicts


def sample_email(n: int) -> emails.Outgoing:
    """The email of one delivery, rendered as the dispatcher renders it."""
    language = ["en", "fr", "es", "ar", "zh", "ru"][n % 6]
    return emails.build(
        PILOT,
        emails.Recipient(f"fp{n}@bench.example.org", f"Focal Point {n}", language),
        ["climate-resilience", "sdg-13"],
        sender="Cities Project <pilots@cities.example.org>",
        unsubscribe_url=f"https://cities.example.org/v1/unsubscribe?token=t{n}",
        delivery_key=f"bench-pilot|fp{n}",
    )


async def smtp_server(port: int) -> asyncio.subprocess.Process:
    """An aiosmtpd server that accepts and drops every message, in its own process as a real
    server would be (in this process it would compete with the sender for the interpreter)."""
    server = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"],
        *["-c", "aiosmtpd.handlers.Sink"],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return server
        await asyncio.sleep(0.1)
    server.kill()
    raise RuntimeError("the benchmark's SMTP server did not start")


async def bench_emails(count: int) -> tuple[list[Measurement], list[Verdict]]:
    """Render and send `count` emails over `EMAIL_CONNECTIONS` connections, then over one; a
    tenth of them over a new connection each.

    Every send raises unless the server answered 250, so each one counted was accepted.
    """
    port = free_port()
    server = await smtp_server(port)
    try:
        pooled = await send_all(port, count, EMAIL_CONNECTIONS)
        reused = await send_all(port, count, 1)
        baseline_count = max(50, count // 10)
        started = time.perf_counter()
        for n in range(baseline_count):
            email = sample_email(n)
            await aiosmtplib.send(
                email.data,
                sender=email.sender,
                recipients=[email.recipient],
                hostname="127.0.0.1",
                port=port,
            )
        fresh = baseline_count / (time.perf_counter() - started)
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
    print(
        f"emails/s: {EMAIL_CONNECTIONS} connections {pooled:,.0f}, one connection {reused:,.0f},"
        f" a connection each {fresh:,.0f}",
        flush=True,
    )
    return (
        [
            Measurement(f"emails/s, {EMAIL_CONNECTIONS} reused connections", pooled, "emails/s"),
            Measurement("emails/s, one reused connection", reused, "emails/s"),
            Measurement("emails/s, a connection each", fresh, "emails/s"),
        ],
        [
            Verdict(
                f"emails/s over {EMAIL_CONNECTIONS} connections",
                pooled,
                EMAILS_TARGET_PER_SECOND,
                pooled >= EMAILS_TARGET_PER_SECOND,
            ),
            Verdict("reuse speed-up over a connection each", reused / fresh, 1.0, reused > fresh),
        ],
    )


async def send_all(port: int, count: int, connections: int) -> float:
    """Emails/s of the notifier's own mailer (`SMTP_CONNECTIONS=connections`) sending `count`
    rendered emails with as many sends at once as it has connections."""
    settings = with_random_secrets(
        NotifierSettings, smtp_host="127.0.0.1", smtp_port=port, smtp_connections=connections
    )
    wiring = wire(settings)  # the notifier's own mailer (its MongoDB client stays unused)
    numbers = iter(range(count))

    async def sender() -> None:
        for n in numbers:
            await wiring.mailer.send(sample_email(n))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(connections)))
        return count / (time.perf_counter() - started)
    finally:
        await wiring.close()


def with_focal_point(body: dict[str, Any], number: int, run: str) -> dict[str, Any]:
    """`body` with a consenting focal point of its own address."""
    return body | {
        "focal_point": {
            "name": f"Focal Point {number}",
            "email": f"fp-{run}-{number}@bench.example.org",
            "language": ["en", "fr", "es", "ar", "zh", "ru"][number % 6],
            "consent": True,
        }
    }


async def bench_registry(count: int) -> tuple[list[Measurement], list[Verdict]]:
    """Responses/s the notifier's own consumer registers (its app, in this process, from a
    fresh group and database), against a consume-only loop of the same topic: once as a
    replica that only consumes (`DISPATCHER_ENABLED=false`, the target), once with its
    dispatcher sending the confirmation emails to a sink meanwhile, as one replica that does
    both."""
    run = uuid.uuid4().hex[:8]
    rng = random.Random(2024)
    bodies = [with_focal_point(response(rng, n), n, run) for n in range(count)]
    settings = with_random_secrets(
        NotifierSettings,
        topic_responses=f"bench-{run}.survey.responses.v1",
        topic_pilots=f"bench-{run}.pilots.announced.v1",
        topic_reviews=f"bench-{run}.survey.reviews.v1",
        topic_erasures=f"bench-{run}.privacy.erasures.v1",
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
    )
    bootstrap = settings.kafka_bootstrap_servers
    await ensure_topics(bootstrap, topics_with_dlq(settings.topic_responses, settings.topic_pilots))
    server = await smtp_server(settings.smtp_port)
    try:
        await fill(bootstrap, settings.topic_responses, bodies)
        baseline = await consume_only(bootstrap, settings.topic_responses, count)
        alone = await registered(settings, count, f"{run}a", dispatching=False)
        sending = await registered(settings, count, f"{run}b", dispatching=True)
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
        await delete_topics(bootstrap, f"bench-{run}.")
    print(
        f"registry: {alone.rate:,.0f} responses/s, {sending.rate:,.0f} while sending,"
        f" consume-only {baseline:,.0f}",
        flush=True,
    )
    return (
        [
            Measurement(f"registry: responses registered{alone.within}", alone.rate, "responses/s"),
            Measurement(
                f"registry with its dispatcher sending meanwhile{sending.within}",
                sending.rate,
                "responses/s",
            ),
            Measurement("registry: consume-only aiokafka loop", baseline, "responses/s"),
            Measurement(
                "confirmation emails its dispatcher sent meanwhile (claim, send, record)",
                sending.sent_per_second,
                "emails/s",
            ),
        ],
        [
            Verdict(
                "registry responses/s",
                alone.rate,
                REGISTRY_TARGET_PER_SECOND,
                alone.rate >= REGISTRY_TARGET_PER_SECOND,
            )
        ],
    )


@dataclass(frozen=True)
class Registered:
    """One registry run: responses registered per second, and what the label should add."""

    rate: float
    within: str
    sent_per_second: float  # confirmation emails its dispatcher sent meanwhile (0 without one)


async def registered(
    base: NotifierSettings, count: int, run: str, *, dispatching: bool
) -> Registered:
    """Register the `count` responses of `base`'s topic with a fresh group and database. The
    clock stops when the consumer has committed every batch (it commits a batch once it is
    stored); the focal points held are then counted once, to check."""
    settings = base.model_copy(
        update={
            "mongodb_database": f"bench_registry_{run}",
            "notifier_group_id": f"bench-notifier-{run}",
            "dispatcher_enabled": dispatching,
        }
    )
    bootstrap = settings.kafka_bootstrap_servers
    group = f"{settings.notifier_group_id}.registry"
    client = mongo.new_client(settings.mongodb_url)
    database = mongo.database(client, settings.mongodb_database)
    focal_points, deliveries = database[FOCAL_POINTS], database[DELIVERIES]
    try:
        app = create_app(settings)
        started = time.perf_counter()
        async with app.router.lifespan_context(app):
            # No lag means every response is registered. Watching the offsets costs the
            # database nothing; counting the records would scan them (FerretDB) and slow the
            # writes being measured.
            while (lag := await consumer_lag(bootstrap, group, settings.topic_responses)) > 0:
                if time.perf_counter() - started > REGISTRY_TIME_LIMIT_SECONDS:
                    # Too slow to finish: the rate so far is the figure (the label says how
                    # many were registered), rather than no figure at all.
                    break
                await asyncio.sleep(LAG_POLL_SECONDS)
            elapsed = time.perf_counter() - started
            held = await focal_points.count_documents({})
            sent = await deliveries.count_documents({"state": "sent"})
    finally:
        await client.drop_database(settings.mongodb_database)
        await client.close()
    if lag == 0 and held != count:
        raise RuntimeError(f"registry: {held:,} focal points held of {count:,} committed")
    within = "" if lag == 0 else f", {count - lag:,} of {count:,} in the time limit"
    return Registered((count - lag) / elapsed, within, sent / elapsed)


async def measure(quick: bool = False) -> Section:
    """The three benchmarks. `quick`: a short smoke run (up to 10,000 focal points, 300 emails,
    200 responses registered)."""
    url = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017")
    registry, registry_verdicts = await bench_registry(QUICK_REGISTRY if quick else REGISTRY)
    matching, matching_verdicts = await bench_matching(url, QUICK_SIZES if quick else SIZES)
    sending, sending_verdicts = await bench_emails(QUICK_EMAILS if quick else EMAILS)
    return Section(
        "notifier",
        "Notifier: registering focal points, matching one pilot, and emails per second",
        registry + matching + sending,
        registry_verdicts + matching_verdicts + sending_verdicts,
    )


def section(quick: bool = False) -> Section:
    """`measure` in its own event loop."""
    return asyncio.run(measure(quick))


def main() -> None:
    """`python -m bench.notifier`."""
    run_alone(section)


if __name__ == "__main__":
    main()
