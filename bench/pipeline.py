"""Webhook to count visible: the intake and analytics as processes, measured from outside as a
survey platform and a dashboard reader see them.

- *Visibility at a steady rate*: new responses are posted at `RATE` webhooks/s (open loop: each
  has its own scheduled time, and a late send counts from that time, so a stalled server is not
  hidden by a stalled generator), while a reader polls `GET /v1/surveys` every `PROBE_SECONDS`.
  The k-th response is visible when the survey's total first reaches k. Responses are counted in
  batches and partitions, so this reads the counter as a queue: the k-th posted stands for
  whichever response made the total k. Target: p95 under 300 ms at 200 webhooks/s.
- *A campaign*: 4,100 new responses (the size of the 2024 surveys) posted by 32 clients at once,
  timed until the last is counted. Target: under 8 s.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import httpx

from bench.load import (
    SURVEY,
    WEBHOOK_PATH,
    Connection,
    drop_database,
    free_port,
    listening,
    load,
    new_webhook_secret,
    service_environment,
    signed_requests,
    start_all,
    stop,
)
from bench.report import Measurement, Section, Verdict, run_alone
from services.analytics.settings import AnalyticsSettings
from services.intake.settings import IntakeSettings
from shared.kafka import delete_topics, ensure_topics, topics_with_dlq

SETTINGS = (IntakeSettings, AnalyticsSettings)
RATE = 200.0
SECONDS, QUICK_SECONDS = 20.0, 3.0
CAMPAIGN, QUICK_CAMPAIGN = 4100, 500
PROBE_SECONDS = 0.01
WARMUP = 64
CONNECTIONS = 32
TIME_LIMIT_SECONDS = 120.0
TARGET_P95_MS = 300.0
TARGET_CAMPAIGN_SECONDS = 8.0


@dataclass(frozen=True)
class Services:
    """Where the running services answer."""

    intake: int
    analytics: int


class Reader:
    """Polls the survey's total as a dashboard would, and keeps when each total was first seen."""

    def __init__(self, port: int) -> None:
        self._client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
        self.seen: list[tuple[float, int]] = []  # (monotonic time, total), totals rising

    async def total(self) -> int:
        """The survey's unique-response total now."""
        answer = await self._client.get("/v1/surveys")
        answer.raise_for_status()
        return next((s["total"] for s in answer.json() if s["survey_id"] == SURVEY), 0)

    async def until(self, total: int, poll: float) -> float:
        """Poll until the total reaches `total`; the time it was first seen there."""
        deadline = time.monotonic() + TIME_LIMIT_SECONDS
        while time.monotonic() < deadline:
            now, seen = time.monotonic(), await self.total()
            if not self.seen or seen > self.seen[-1][1]:
                self.seen.append((now, seen))
            if seen >= total:
                return now
            await asyncio.sleep(poll)
        raise TimeoutError(f"analytics counted {self.seen[-1:]} of {total}")

    def first_at_least(self, total: int) -> float:
        """When the total was first seen at or above `total`."""
        return next(at for at, seen in self.seen if seen >= total)

    async def close(self) -> None:
        """Close the reader's connection."""
        await self._client.aclose()


async def warm_up(services: Services, run: str, secret: str) -> None:
    """Post a few responses and wait until they are counted: the analytics consumer has joined
    its group and both services have their connections before anything is timed."""
    await campaign(services, f"{run}-warm", secret, WARMUP)


async def steady(services: Services, run: str, secret: str, seconds: float) -> list[float]:
    """Post at `RATE` for `seconds`; the latency in ms from each scheduled send to visible."""
    prepared = signed_requests(int(RATE * seconds), f"{run}-steady", secret)
    reader = Reader(services.analytics)
    connections: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        connections.put_nowait(await Connection.open(services.intake))
    base = await reader.total()
    accepted: list[float] = []

    async def send(scheduled: float, body: bytes, headers: dict[str, str]) -> None:
        connection = await connections.get()
        try:
            if await connection.post(WEBHOOK_PATH, body, headers) == 202:
                accepted.append(scheduled)
        finally:
            connections.put_nowait(connection)

    try:
        started = time.monotonic()
        probing = asyncio.create_task(reader.until(base + len(prepared), PROBE_SECONDS))
        sends = []
        for number, (body, headers) in enumerate(prepared):
            scheduled = started + number / RATE
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            sends.append(asyncio.create_task(send(scheduled, body, headers)))
        await asyncio.gather(*sends)
        if len(accepted) != len(prepared):
            raise RuntimeError(f"the intake accepted {len(accepted)} of {len(prepared)}")
        await probing
    finally:
        while not connections.empty():
            await connections.get_nowait().close()
        await reader.close()
    scheduled_times = sorted(accepted)
    return [
        (reader.first_at_least(base + k + 1) - at) * 1000 for k, at in enumerate(scheduled_times)
    ]


async def campaign(services: Services, run: str, secret: str, count: int) -> float:
    """Seconds from the first post of `count` new responses to the last one counted."""
    prepared = signed_requests(count, f"{run}-campaign", secret)
    reader = Reader(services.analytics)
    try:
        base = await reader.total()
        started = time.monotonic()
        result = await load("campaign", services.intake, prepared)
        if result.accepted != count:
            raise RuntimeError(f"the intake accepted {result.accepted} of {count}")
        return await reader.until(base + count, 0.05) - started
    finally:
        await reader.close()


def section(quick: bool = False) -> Section:
    """Start both services on their own topics and database, measure, stop, clean up."""
    run = uuid.uuid4().hex[:10]
    secret = new_webhook_secret()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    intake_port, analytics_port = free_port(), free_port()
    env = service_environment(run, secret) | listening(
        {"intake": intake_port, "analytics": analytics_port}
    )
    asyncio.run(ensure_topics(bootstrap, topics_with_dlq(env["TOPIC_RESPONSES"])))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes = start_all(
            [
                ([sys.executable, "-m", "services.analytics"], env, analytics_port),
                ([sys.executable, "-m", "services.intake"], env, intake_port),
            ]
        )
        services = Services(intake_port, analytics_port)
        asyncio.run(warm_up(services, run, secret))
        latencies = asyncio.run(steady(services, run, secret, QUICK_SECONDS if quick else SECONDS))
        count = QUICK_CAMPAIGN if quick else CAMPAIGN
        counted_in = asyncio.run(campaign(services, run, secret, count))
    finally:
        for process in processes:
            stop(process)
        asyncio.run(drop_database(env["MONGODB_DATABASE"]))
        asyncio.run(delete_topics(bootstrap, f"bench-{run}."))
    percentiles = statistics.quantiles(latencies, n=100, method="inclusive")
    p50, p95 = percentiles[49], percentiles[94]
    return Section(
        "pipeline",
        f"Pipeline: webhook to count visible at {RATE:.0f}/s, and a campaign of {count:,}",
        [
            Measurement(f"visible after posting at {RATE:.0f}/s: p50", p50, "ms"),
            Measurement(f"visible after posting at {RATE:.0f}/s: p95", p95, "ms"),
            Measurement(f"{count:,} new responses counted in", counted_in, "s"),
        ],
        [
            Verdict("visible p95 ms (lower is better)", p95, TARGET_P95_MS, p95 < TARGET_P95_MS),
            Verdict(
                f"campaign of {count:,} seconds (lower is better)",
                counted_in,
                TARGET_CAMPAIGN_SECONDS,
                counted_in < TARGET_CAMPAIGN_SECONDS,
            ),
        ],
        [f"{len(latencies):,} webhooks at {RATE:.0f}/s; the reader polls every 10 ms"],
    )


def main() -> None:
    """`python -m bench.pipeline`."""
    run_alone(section)


if __name__ == "__main__":
    main()
