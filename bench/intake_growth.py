"""The intake's part of `bench.growth`: its rate with many responses accepted before.

For each size, a fresh database is preloaded with the claims that many accepted responses leave
(10% of them revised once), as a long campaign leaves them; then an intake process takes
`NEW` new webhooks from 32 connections, and `REDELIVERED` of them again (a platform's retries):
answered `duplicate` from what the claims hold. A step that read the claims, or the revisions,
per webhook or per batch would slow down here as the size grows (each such read is a scan on
FerretDB).
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import timedelta

from rich.progress import Progress

from bench.load import (
    SURVEY,
    drop_database,
    free_port,
    listening,
    load,
    new_webhook_secret,
    service_environment,
    signed,
    start,
    stop,
    webhook_body,
)
from services.intake.app import RESPONSE_CLAIMS
from services.intake.claims import ClaimStore
from services.intake.revisions import revision_claim_key, seal_key
from shared import mongo
from shared.kafka import delete_topics, ensure_topics, topics_with_dlq

NEW, QUICK_NEW = 10_000, 1_000
REDELIVERED, QUICK_REDELIVERED = 2_000, 300
WARMUP = 300
REVISED_EVERY = 10  # one stored response in 10 has a revision 2
PRELOAD_BATCH = 20_000
STORED_RUN = "stored"
DUPLICATE = 200


@dataclass(frozen=True)
class IntakeAtSize:
    """New webhooks and redeliveries accepted per second with some responses stored."""

    rate: float
    redelivered: float
    notes: list[str]


def stored_keys(stored: int, start: int, count: int) -> list[str]:
    """The claim keys (and the seals their first deliveries asked) that responses `start` to
    `start + count` of `stored` left, one in `REVISED_EVERY` with its revision 2 as well."""
    keys = []
    for number in range(start, min(stored, start + count)):
        identity = f"{SURVEY}/generic:bench-{STORED_RUN}-{number}"
        revisions = (1, 2) if number % REVISED_EVERY == 0 else (1,)
        for revision in revisions:
            key = revision_claim_key(identity, revision)
            keys += [key, seal_key(key)]
    return keys


async def preload(env: dict[str, str], stored: int, progress: Progress) -> None:
    """Record the claims of `stored` accepted responses in the intake's database."""
    client = mongo.new_client(env["MONGODB_URL"])
    claims = ClaimStore(client[env["MONGODB_DATABASE"]][RESPONSE_CLAIMS], timedelta(seconds=30))
    task = progress.add_task(f"preloading the claims of {stored:,} responses", total=stored)
    try:
        await claims.record_decided([])  # a database this version wrote from its start
        for start in range(0, stored, PRELOAD_BATCH):
            await claims.record_decided(stored_keys(stored, start, PRELOAD_BATCH))
            progress.advance(task, min(PRELOAD_BATCH, stored - start))
    finally:
        progress.remove_task(task)
        await client.close()


def intake_at(stored: int, quick: bool, run: str, progress: Progress) -> IntakeAtSize:
    """Preload `stored`, then time `NEW` new webhooks and `REDELIVERED` redeliveries through
    an intake process; the database and the topics are dropped."""
    new, again = (QUICK_NEW, QUICK_REDELIVERED) if quick else (NEW, REDELIVERED)
    secret = new_webhook_secret()
    env = service_environment(f"{run}-intake-{stored}", secret) | {
        "MONGODB_URL": os.environ.get("MONGODB_URL", "mongodb://localhost:27017")
    }
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    label = f"{run}-{stored}"
    fresh = [webhook_body(number, f"{label}-new") for number in range(WARMUP + new)]
    warmup = signed(fresh[:WARMUP], f"{label}-warm", secret)
    posted = signed(fresh[WARMUP:], f"{label}-new", secret)
    redelivered = signed(fresh[WARMUP : WARMUP + again], f"{label}-again", secret)
    port = free_port()
    process = None
    try:
        asyncio.run(
            ensure_topics(bootstrap, topics_with_dlq(env["TOPIC_RESPONSES"], env["TOPIC_PILOTS"]))
        )
        asyncio.run(preload(env, stored, progress))
        process = start(
            [sys.executable, "-m", "services.intake"], env | listening({"intake": port}), port
        )
        asyncio.run(load("intake warm-up", port, warmup))
        accepted = asyncio.run(load(f"intake with {stored:,} stored", port, posted))
        duplicates = asyncio.run(
            load(f"redeliveries with {stored:,} stored", port, redelivered, expected=DUPLICATE)
        )
    finally:
        if process is not None:
            stop(process)
        asyncio.run(drop_database(env["MONGODB_DATABASE"]))
        asyncio.run(delete_topics(bootstrap, f"bench-{run}-intake-{stored}."))
    notes = [
        f"intake with {stored:,} stored: {accepted.accepted:,} of {new:,} new webhooks accepted, "
        f"{duplicates.accepted:,} of {again:,} redeliveries answered duplicate; "
        f"p99 {accepted.percentile(99):.1f} ms and {duplicates.percentile(99):.1f} ms"
    ]
    print(
        f"intake with {stored:,} stored: {accepted.rate:,.0f} webhooks/s, "
        f"{duplicates.rate:,.0f} redeliveries/s"
    )
    return IntakeAtSize(accepted.rate, duplicates.rate, notes)
