"""`python -m bench.growth`: does the cost of analytics and of the intake grow with the responses
already stored?

For each size in `STORED` (0, 100,000 and 1,000,000; `QUICK_STORED` in a smoke run), a fresh
database is preloaded with that many stored responses (their raw documents, inserted directly:
what a long campaign leaves behind), then:

- **applied rate**: an analytics process counts `NEW` new responses from a topic filled before
  it starts; the clock runs from its start to the last one counted;
- **catch-up after SIGKILL**: an analytics process counts `CATCH_UP` more, added to the same
  topic, and is SIGKILLed once its first batch of them is counted (work in progress: the batch
  it was applying is read again); a new process is started and the clock runs from its start
  until all are counted. The report says how many times that process read stored responses by
  id (`analytics_stored_response_reads_total`, each a scan on FerretDB): a kill during a raw
  insert leaves responses stored without a receipt, which a probe of the unique `origin` index
  settles with no such read.
- **the intake**: its rate for new webhooks and for redeliveries, with the claims of that many
  accepted responses stored (`bench/intake_growth.py`).

Targets (issue "Performance"): at the largest size each figure within 1.5x of its value at 0.
A step that read the whole collection per response or per batch would show here first.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import Progress

from bench.analytics import NotCounted, counted, response
from bench.intake_growth import intake_at
from bench.load import (
    drop_database,
    free_port,
    listening,
    new_webhook_secret,
    service_environment,
    start_all,
    stop,
)
from bench.report import Curve, Measurement, Section, Verdict, run_alone
from bench.scaleout import analytics_settings
from bench.topics import fill
from services.analytics.aggregates import OVERALL, Positioned
from services.analytics.documents import raw_document
from services.analytics.settings import AnalyticsSettings
from services.analytics.wiring import wire
from shared.events import SurveyResponse
from shared.kafka import delete_topics, ensure_topics, topics_with_dlq

STORED = (0, 100_000, 1_000_000)
QUICK_STORED = (0, 2_000, 10_000)
NEW, QUICK_NEW = 20_000, 2_000
# The catch-up spans several of the consumer's batches, so that the kill lands between two:
# two of `BATCH`, or five of `QUICK_BATCH` in a smoke run.
CATCH_UP, QUICK_CATCH_UP = 10_000, 5_000
BATCH, QUICK_BATCH = 5000, 1000
PRELOAD_BATCH = 1000
TARGET_GROWTH = 1.5
KILL_POLL_SECONDS = 0.2


def received_now() -> str:
    """The time stamp of responses received now."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bodies(prefix: str, count: int, seed: int) -> list[dict[str, object]]:
    """`count` varied responses with ids under `prefix`, received now."""
    rng, received = random.Random(seed), received_now()
    made = []
    for number in range(count):
        body = response(rng, number, received)
        body["response_id"] = f"generic:{prefix}-{number}"
        made.append(body)
    return made


async def preload(settings: AnalyticsSettings, stored: int, progress: Progress) -> None:
    """Store the raw documents of `stored` responses as analytics stores them (with their
    indexes and marks: a long campaign's grew with it), without counting them."""
    wiring = wire(settings)
    task = progress.add_task(f"preloading {stored:,} stored responses", total=stored)
    try:
        await wiring.ensure_indexes()
        for start in range(0, stored, PRELOAD_BATCH):
            documents = [
                raw_document(Positioned(SurveyResponse.model_validate(body), 0, start + n))
                for n, body in enumerate(bodies(f"stored-{start}", PRELOAD_BATCH, start))
            ][: stored - start]
            await wiring.store.insert_raw(documents)
            progress.advance(task, len(documents))
    finally:
        progress.remove_task(task)
        await wiring.close()


async def total(settings: AnalyticsSettings) -> int:
    """The overall count analytics shows in the settings' database."""
    wiring = wire(settings)
    try:
        overall = await wiring.store.aggregate(OVERALL)
        return int(overall.get("total", 0)) if overall else 0
    finally:
        await wiring.close()


def analytics_process(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """One analytics process on its own port, ready; and the port."""
    port = free_port()
    command = [sys.executable, "-m", "services.analytics"]
    return start_all([(command, env | listening({"analytics": port}), port)])[0], port


def stored_response_lookups(port: int) -> tuple[dict[str, int], int]:
    """How many times the analytics process on `port` read stored responses by id (each a
    scan on FerretDB), by reason, and how many positions it probed instead, from its
    `/metrics`."""
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    totals = [
        (family.name, sample)
        for family in text_string_to_metric_families(metrics)
        if family.name.startswith("analytics_stored_response_")
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
    reads = {
        sample.labels["reason"]: int(sample.value)
        for name, sample in totals
        if name == "analytics_stored_response_reads"
    }
    probed = sum(
        int(sample.value) for name, sample in totals if name == "analytics_stored_response_probes"
    )
    return reads, probed


def applied_rate(env: dict[str, str], events: int) -> tuple[float, str | None]:
    """Responses/s of one process from its start to `events` counted; when the time limit ran
    out first, the rate so far and why."""
    started = time.perf_counter()
    process, _ = analytics_process(env)
    try:
        asyncio.run(counted(analytics_settings(env), events))
        return events / (time.perf_counter() - started), None
    except NotCounted as short:
        return short.total / (time.perf_counter() - started), str(short)
    finally:
        stop(process)


@dataclass(frozen=True)
class CatchUp:
    """Seconds to catch up, the reads of stored responses they took and the positions they
    probed instead, and why they ran short."""

    seconds: float
    reads: dict[str, int]
    probed: int
    short: str | None


def catch_up(env: dict[str, str], before: int, events: int) -> CatchUp:
    """SIGKILL a process once it counted a first batch of `events` more, then the seconds a new
    one takes from its start until all of them are counted, how many times it read stored
    responses meanwhile (each a scan on FerretDB) and how many positions it probed instead;
    when the time limit ran out first, the seconds so far (a lower bound) and why."""
    settings = analytics_settings(env)
    victim, _ = analytics_process(env)
    try:
        while (shown := asyncio.run(total(settings))) <= before:
            if victim.poll() is not None:
                raise RuntimeError(f"analytics exited ({victim.returncode}) before the kill")
            time.sleep(KILL_POLL_SECONDS)
    finally:
        victim.kill()
        victim.wait()
    if shown >= before + events:
        raise RuntimeError(
            "the process counted everything before it was killed: nothing to catch up"
        )
    started = time.perf_counter()
    process, port = analytics_process(env)
    try:
        asyncio.run(counted(settings, before + events))
        return CatchUp(time.perf_counter() - started, *stored_response_lookups(port), None)
    except NotCounted as short:
        return CatchUp(time.perf_counter() - started, *stored_response_lookups(port), str(short))
    finally:
        stop(process)


@dataclass(frozen=True)
class AtSize:
    """Both figures with some responses stored; a note for each that ran out of time."""

    rate: float
    catch_up: float
    notes: list[str]


def measure_at(stored: int, quick: bool, run: str, progress: Progress) -> AtSize:
    """Preload `stored`, then the applied rate and the catch-up time; the database is dropped."""
    new, more = (QUICK_NEW, QUICK_CATCH_UP) if quick else (NEW, CATCH_UP)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    env = service_environment(f"{run}-{stored}", new_webhook_secret()) | {
        "MONGODB_URL": os.environ.get("MONGODB_URL", "mongodb://localhost:27017")
    }
    topic = env["TOPIC_RESPONSES"]
    # One topic and one group throughout: analytics counts a database's responses from one
    # topic, by position, so the catch-up continues where the rate's process left off.
    env |= {"ANALYTICS_GROUP_ID": f"bench-{run}-{stored}"}
    env |= {"ANALYTICS_BATCH_SIZE": str(QUICK_BATCH if quick else BATCH)}
    notes = []
    try:
        asyncio.run(ensure_topics(bootstrap, topics_with_dlq(topic)))
        asyncio.run(preload(analytics_settings(env), stored, progress))
        asyncio.run(fill(bootstrap, topic, bodies("new", new, 1)))
        rate, short = applied_rate(env, new)
        if short:
            notes.append(f"applied rate with {stored:,} stored: {short}; the rate so far")
        asyncio.run(fill(bootstrap, topic, bodies("more", more, 2)))
        caught = catch_up(env, new, more)
        seconds = caught.seconds
        reads = ", ".join(f"{why}: {n}" for why, n in sorted(caught.reads.items())) or "none"
        notes.append(
            f"catch-up with {stored:,} stored: reads of stored responses by id: {reads}; "
            f"positions probed instead: {caught.probed:,}"
        )
        if caught.short:
            notes.append(
                f"catch-up with {stored:,} stored: {caught.short}; the time is a lower bound"
            )
    finally:
        asyncio.run(drop_database(env["MONGODB_DATABASE"]))
        asyncio.run(delete_topics(bootstrap, f"bench-{run}-{stored}."))
    print(f"{stored:,} stored: {rate:,.0f} responses/s, catch-up {seconds:.1f} s")
    return AtSize(rate, seconds, notes)


def section(quick: bool = False) -> Section:
    """Both figures at each size; each held against its value at 0 stored."""
    run = uuid.uuid4().hex[:8]
    sizes = QUICK_STORED if quick else STORED
    with Progress(transient=True) as progress:
        figures = {stored: measure_at(stored, quick, run, progress) for stored in sizes}
        intake = {stored: intake_at(stored, quick, run, progress) for stored in sizes}
    more = QUICK_CATCH_UP if quick else CATCH_UP
    largest = sizes[-1]
    first, last = figures[0], figures[largest]
    slower, later = first.rate / last.rate, last.catch_up / first.catch_up
    intake_slower = intake[0].rate / intake[largest].rate
    redelivery_slower = intake[0].redelivered / intake[largest].redelivered
    return Section(
        "growth",
        f"Cost against responses already stored: {', '.join(f'{s:,}' for s in sizes)}",
        [
            Measurement(f"applied with {s:,} stored", at.rate, "responses/s")
            for s, at in figures.items()
        ]
        + [
            Measurement(f"catch-up of {more:,} after SIGKILL with {s:,} stored", at.catch_up, "s")
            for s, at in figures.items()
        ]
        + [
            Measurement(f"intake with {s:,} stored", at.rate, "webhooks/s")
            for s, at in intake.items()
        ]
        + [
            Measurement(f"intake redeliveries with {s:,} stored", at.redelivered, "webhooks/s")
            for s, at in intake.items()
        ],
        [
            Verdict(
                f"applied rate at 0 / at {largest:,} stored",
                slower,
                TARGET_GROWTH,
                slower <= TARGET_GROWTH,
            ),
            Verdict(
                f"catch-up at {largest:,} / at 0 stored",
                later,
                TARGET_GROWTH,
                later <= TARGET_GROWTH,
            ),
            Verdict(
                f"intake rate at 0 / at {largest:,} stored",
                intake_slower,
                TARGET_GROWTH,
                intake_slower <= TARGET_GROWTH,
            ),
            Verdict(
                f"intake redeliveries at 0 / at {largest:,} stored",
                redelivery_slower,
                TARGET_GROWTH,
                redelivery_slower <= TARGET_GROWTH,
            ),
        ],
        [
            "each analytics figure starts an analytics process: its start-up (about 2 s) is in "
            "the time"
        ]
        + [note for at in figures.values() for note in at.notes]
        + [note for at in intake.values() for note in at.notes],
        [
            Curve(
                "responses already stored",
                "responses/s",
                {"applied": [(s, at.rate) for s, at in figures.items()]},
            ),
            Curve(
                "responses already stored",
                "s",
                {
                    f"catch-up of {more:,} after SIGKILL": [
                        (s, at.catch_up) for s, at in figures.items()
                    ]
                },
            ),
            Curve(
                "responses already stored",
                "webhooks/s",
                {
                    "intake: new webhooks": [(s, at.rate) for s, at in intake.items()],
                    "intake: redeliveries": [(s, at.redelivered) for s, at in intake.items()],
                },
            ),
        ],
    )


def main() -> None:
    """`python -m bench.growth`."""
    run_alone(section)


if __name__ == "__main__":
    main()
