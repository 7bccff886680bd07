"""`python -m bench.scaleout`: what more processes buy on this machine, and what limits them.

- Analytics with 1, 2 and 3 processes in one consumer group, on a topic of 6 partitions filled
  before the clock starts with `SCALE_EVENTS` responses (the same ones as `bench.analytics`).
  Each count has its own group and database; the clock runs from the processes' start (group
  joins and rebalances included: they are what a scale-out costs) to the last response counted.
- The intake with 1 and 2 processes, the load generator's `CONCURRENCY` connections split evenly
  between them, each webhook a new response.

For each, the rate and the CPU every process used over the measured time, in cores (the OS's
own accounting, through psutil): the services, the load generator and the servers of the stack
(Kafka, FerretDB), so a reader sees whether the code or the machine limits. Nothing here is a
target: issue-level targets live in the other sections.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import psutil

from bench.analytics import QUICK_EVENTS, counted, responses
from bench.cpu import cpu_seconds, metered, stack_processes
from bench.load import (
    CONCURRENCY,
    Result,
    drop_database,
    free_port,
    listening,
    load,
    new_webhook_secret,
    service_environment,
    signed_requests,
    start_all,
    stop,
    with_random_secrets,
)
from bench.report import Measurement, Section, run_alone
from bench.topics import fill
from services.analytics.settings import AnalyticsSettings
from shared.kafka import delete_topics, ensure_topics, topics_with_dlq

EVENTS = int(os.environ.get("SCALE_EVENTS", "30000"))
ANALYTICS_COUNTS = (1, 2, 3)
INTAKE_COUNTS = (1, 2)
PARTITIONS = 6
REQUESTS = int(os.environ.get("SCALE_REQUESTS", "3000"))
QUICK_REQUESTS = 300


@dataclass(frozen=True)
class Run:
    """One configuration measured: its rate and the cores each process used meanwhile."""

    name: str
    rate: float
    unit: str
    cores: dict[str, float]


def analytics_settings(env: dict[str, str]) -> AnalyticsSettings:
    """The settings of analytics processes started with `env`, as this process reads them."""
    return with_random_secrets(
        AnalyticsSettings,
        mongodb_url=env["MONGODB_URL"],
        mongodb_database=env["MONGODB_DATABASE"],
    )


def analytics_servers(
    env: dict[str, str], count: int
) -> list[tuple[list[str], dict[str, str], int]]:
    """`count` analytics processes in one group, each on its own HTTP port."""
    servers = []
    for _ in range(count):
        port = free_port()
        servers.append(
            (
                [sys.executable, "-m", "services.analytics"],
                env | listening({"analytics": port}),
                port,
            )
        )
    return servers


def analytics_run(env: dict[str, str], count: int, events: int) -> Run:
    """`count` analytics processes from start to the last of `events` counted."""
    cores: dict[str, float] = {}
    processes: list[subprocess.Popen[bytes]] = []
    started = time.perf_counter()
    try:
        with metered(stack_processes() | {"this benchmark": psutil.Process()}, cores):
            processes = start_all(analytics_servers(env, count))
            asyncio.run(counted(analytics_settings(env), events))
            wall = time.perf_counter() - started
            # Started with the clock: all their CPU time so far is the run's.
            for number, process in enumerate(processes, start=1):
                cores[f"analytics #{number}"] = cpu_seconds(psutil.Process(process.pid)) / wall
        rate = events / wall
    finally:
        for process in processes:
            stop(process)
        asyncio.run(drop_database(env["MONGODB_DATABASE"]))
    return Run(f"analytics x{count}", rate, "responses/s", cores)


def scale_analytics(quick: bool, run: str, bootstrap: str) -> list[Run]:
    """Fill one topic, then count it with 1, 2 and 3 processes, each with a fresh group and
    database."""
    events = QUICK_EVENTS if quick else EVENTS
    env = service_environment(run, new_webhook_secret()) | {
        "MONGODB_URL": os.environ.get("MONGODB_URL", "mongodb://localhost:27017")
    }
    topic = env["TOPIC_RESPONSES"]
    asyncio.run(ensure_topics(bootstrap, topics_with_dlq(topic), partitions=PARTITIONS))
    print(f"filling {topic} with {events:,} responses over {PARTITIONS} partitions…")
    asyncio.run(fill(bootstrap, topic, responses(events)))
    runs = []
    for count in ANALYTICS_COUNTS:
        mine = env | {
            "ANALYTICS_GROUP_ID": f"bench-analytics-{run}-x{count}",
            "MONGODB_DATABASE": f"bench_{run}_x{count}",
        }
        measured = analytics_run(mine, count, events)
        print(f"{measured.name}: {measured.rate:,.0f} {measured.unit}")
        runs.append(measured)
    return runs


async def split_load(ports: list[int], requests: int, run: str, secret: str) -> float:
    """Post `requests` new webhooks, split evenly between the intakes at `ports`, each with its
    share of the connections; accepted webhooks/s over the whole."""
    share = requests // len(ports)
    connections = max(1, CONCURRENCY // len(ports))
    started = time.perf_counter()
    results: list[Result] = await asyncio.gather(
        *(
            load(
                f"intake #{n + 1}",
                port,
                signed_requests(share, f"{run}-{n}", secret),
                connections=connections,
            )
            for n, port in enumerate(ports)
        )
    )
    return sum(result.accepted for result in results) / (time.perf_counter() - started)


def intake_run(env: dict[str, str], count: int, requests: int, run: str, secret: str) -> Run:
    """`count` intake processes under the load generator."""
    ports = [free_port() for _ in range(count)]
    command = [sys.executable, "-m", "services.intake"]
    processes = start_all([(command, env | listening({"intake": port}), port) for port in ports])
    cores: dict[str, float] = {}
    try:
        # Warm-up: connections, the first claims and produces.
        asyncio.run(split_load(ports, 64 * count, f"{run}-warm", secret))
        named = {f"intake #{n + 1}": psutil.Process(p.pid) for n, p in enumerate(processes)}
        with metered(stack_processes() | named | {"load generator": psutil.Process()}, cores):
            rate = asyncio.run(split_load(ports, requests, run, secret))
    finally:
        for process in processes:
            stop(process)
    return Run(f"intake x{count}", rate, "webhooks/s", cores)


def scale_intake(quick: bool, run: str, bootstrap: str) -> list[Run]:
    """The intake with 1 and then 2 processes, on the run's own topics and database."""
    requests = QUICK_REQUESTS if quick else REQUESTS
    secret = new_webhook_secret()
    env = service_environment(f"{run}i", secret)
    asyncio.run(ensure_topics(bootstrap, topics_with_dlq(env["TOPIC_RESPONSES"])))
    runs = []
    try:
        for count in INTAKE_COUNTS:
            measured = intake_run(env, count, requests, f"{run}-x{count}", secret)
            print(f"{measured.name}: {measured.rate:,.0f} {measured.unit}")
            runs.append(measured)
    finally:
        asyncio.run(drop_database(env["MONGODB_DATABASE"]))
    return runs


def section(quick: bool = False) -> Section:
    """Both scale-outs, with the CPU of every process; no targets."""
    run = uuid.uuid4().hex[:8]
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    try:
        runs = scale_analytics(quick, run, bootstrap) + scale_intake(quick, run, bootstrap)
    finally:
        asyncio.run(delete_topics(bootstrap, f"bench-{run}"))
    measurements = [Measurement(r.name, r.rate, r.unit) for r in runs]
    measurements += [
        Measurement(f"{r.name}: {name}", used, "CPU cores")
        for r in runs
        for name, used in sorted(r.cores.items())
    ]
    machine = os.cpu_count() or 1
    notes = [
        f"{r.name}: {sum(r.cores.values()):.2f} of {machine} cores busy in the processes measured"
        for r in runs
    ]
    return Section(
        "scaleout",
        f"Scale-out: analytics x{'/'.join(map(str, ANALYTICS_COUNTS))} on {PARTITIONS} partitions, "
        f"intake x{'/'.join(map(str, INTAKE_COUNTS))}, with the CPU of every process",
        measurements,
        [],
        notes,
    )


def main() -> None:
    """`python -m bench.scaleout`."""
    run_alone(section)


if __name__ == "__main__":
    main()
