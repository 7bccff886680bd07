"""`make bench-intake`: sustained accepted webhooks/s and latency of one intake process, against
ceilings measured with the same load generator in the same run: a bare FastAPI endpoint that
only parses the same JSON (the HTTP ceiling); one that also does the least durable work a
webhook needs, one MongoDB insert and one acknowledged Kafka produce (the durable ceiling); and
one that does the intake's checks (signature, admission) before that work (the checked ceiling,
the best an intake that validates what it accepts can do here). See `bench.ceiling`.

Every server runs as its own Uvicorn process on this machine; the load generator posts signed
generic webhooks, each a new response (so every one is claimed in MongoDB and published to
Kafka), from `CONCURRENCY` connections. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psutil
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench.cpu import spent, stack_processes
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
    start,
    stop,
)
from bench.report import Measurement, Section, Verdict, run_alone
from services.intake.settings import IntakeSettings
from shared.kafka import delete_topics, ensure_topics, topics_with_dlq
from shared.serve import tune_garbage_collector

SETTINGS = (IntakeSettings,)
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "3000"))
WARMUP = 100
QUICK_REQUESTS = 400
# Targets: against the durable ceiling, against the bare parse, and the slowest answers.
TARGET_DURABLE_RATIO = 0.8
TARGET_BARE_RATIO = 0.25
TARGET_P99_MS = 150.0
ROUNDS = 4
BARE = "bare FastAPI (parse only)"
DURABLE = "durable ceiling (insert + produce)"
CHECKED = "checked ceiling (checks + insert + produce)"
INTAKE = "intake"
SHORT = {BARE: "bare parse", DURABLE: "durable ceiling", CHECKED: "checked ceiling"}
# The processes whose CPU is counted per accepted webhook, besides the stack's servers.
OWN_PROCESS = "its own process"
LOAD_GENERATOR = "load generator"
CPU_UNIT = "µs of CPU per webhook"
SHARE_UNIT = "x the durable ceiling's rate"
UVICORN = ["-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
SERVERS: list[tuple[str, list[str]]] = [
    (BARE, [*UVICORN, "bench.intake:bare"]),
    (DURABLE, [*UVICORN, "bench.ceiling:durable"]),
    (CHECKED, [*UVICORN, "bench.ceiling:checked"]),
    (INTAKE, ["-m", "services.intake"]),
]


@asynccontextmanager
async def tuned(_: FastAPI) -> AsyncIterator[None]:
    """The garbage collector tuned as the intake's is (`shared.serve`)."""
    tune_garbage_collector()
    yield


bare = FastAPI(lifespan=tuned)


@bare.post("/v1/webhooks/{source}/{survey_id}", status_code=202)
async def parse_only(source: str, survey_id: str, request: Request) -> JSONResponse:
    """The baseline: read and parse the same JSON body, answer as the intake does."""
    payload = json.loads(await request.body())
    return JSONResponse({"response_id": payload.get("response_id"), "status": "accepted"}, 202)


@bare.get("/readyz")
async def ready() -> dict[str, str]:
    """Answers once the process serves."""
    return {"status": "ready"}


async def measure(
    servers: dict[str, tuple[int, psutil.Process]], run: str, requests: int, secret: str
) -> tuple[list[Result], dict[str, dict[str, float]]]:
    """Warm every server up, then load them in alternating rounds, so that a change in the
    machine's load (it is shared) weighs on all alike. Also the CPU seconds each process used
    while each server was loaded: the server's own, the stack's and the load generator's."""
    for name, (port, _) in servers.items():
        await load(f"{name} warm-up", port, signed_requests(WARMUP, f"{run}-warm", secret))
    per_round = requests // ROUNDS
    totals = {name: Result(name, 0, 0.0, []) for name in servers}
    cpu: dict[str, dict[str, float]] = {name: {} for name in servers}
    watched = stack_processes() | {LOAD_GENERATOR: psutil.Process()}
    for number in range(ROUNDS):
        for name, (port, process) in servers.items():
            prepared = signed_requests(per_round, f"{run}-{number}", secret)
            with spent(watched | {OWN_PROCESS: process}, cpu[name]):
                part = await load(name, port, prepared)
            total = totals[name]
            totals[name] = Result(
                name,
                total.accepted + part.accepted,
                total.seconds + part.seconds,
                total.latencies_ms + part.latencies_ms,
            )
    return list(totals.values()), cpu


def cpu_figures(
    results: dict[str, Result], cpu: dict[str, dict[str, float]]
) -> tuple[list[Measurement], list[str]]:
    """CPU per accepted webhook of each process, the cores each server used, and what the
    intake could spend per webhook to reach the target against the durable ceiling."""
    measurements = [
        Measurement(f"{name}: {process}", seconds / results[name].accepted * 1e6, CPU_UNIT)
        for name, used in cpu.items()
        for process, seconds in used.items()
        if results[name].accepted
    ]
    machine = os.cpu_count() or 1
    notes = [
        f"{name}: {used.get(OWN_PROCESS, 0.0) / results[name].seconds:.2f} cores in its own "
        f"process, {sum(used.values()) / results[name].seconds:.2f} of {machine} in the "
        "processes measured"
        for name, used in cpu.items()
        if results[name].seconds
    ]
    intake, durable = results[INTAKE], results[DURABLE]
    if intake.accepted and durable.accepted:
        cores = cpu[INTAKE].get(OWN_PROCESS, 0.0) / intake.seconds
        wanted = TARGET_DURABLE_RATIO * durable.rate
        budget = cores / wanted * 1e6
        per_webhook = {
            name: cpu[name].get(OWN_PROCESS, 0.0) / results[name].accepted * 1e6
            for name in (CHECKED, DURABLE, BARE)
            if results[name].accepted
        }
        intake_spent = cpu[INTAKE].get(OWN_PROCESS, 0.0) / intake.accepted * 1e6
        others = ", ".join(
            f"the {SHORT[name]} {micros:.0f} µs" for name, micros in per_webhook.items()
        )
        notes.append(
            f"for {TARGET_DURABLE_RATIO} of the durable ceiling ({wanted:,.0f} webhooks/s) at the "
            f"{cores:.2f} cores its process used, the intake could spend at most {budget:.0f} µs "
            f"of CPU per webhook; it spent {intake_spent:.0f} µs, {others}"
        )
    return measurements, notes


def share_of_durable(results: dict[str, Result]) -> tuple[list[Measurement], list[str]]:
    """The rates of the checked ceiling and of the intake as shares of the durable ceiling's,
    and, when the checks alone fall short of the target, that no intake running them meets it."""
    rates = {name: r.accepted / r.seconds if r.seconds else 0.0 for name, r in results.items()}
    if not rates[DURABLE]:
        return [], []
    shares = {name: rates[name] / rates[DURABLE] for name in (CHECKED, INTAKE)}
    measurements = [Measurement(name, share, SHARE_UNIT) for name, share in shares.items()]
    notes = []
    if rates[CHECKED] and shares[CHECKED] < TARGET_DURABLE_RATIO:
        notes.append(
            f"the intake's checks alone (signature and admission, then the durable ceiling's "
            f"work) reached {shares[CHECKED]:.2f} of the durable ceiling, so no intake that "
            f"runs them could meet the {TARGET_DURABLE_RATIO} target in this run; the intake "
            f"reached {rates[INTAKE] / rates[CHECKED]:.2f} of the checked ceiling"
        )
    return measurements, notes


def section(quick: bool = False) -> Section:
    """Measure the four servers one after the other, in rounds, and hold the intake against
    the bare parse and the durable ceiling. `quick`: a short smoke run (a few hundred
    requests)."""
    requests = QUICK_REQUESTS if quick else REQUESTS
    run = uuid.uuid4().hex[:10]
    secret = new_webhook_secret()
    env = service_environment(run, secret)
    # As in a deployment, the topics exist before the first webhook (`shared.kafka_topics`).
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    asyncio.run(
        ensure_topics(bootstrap, topics_with_dlq(env["TOPIC_RESPONSES"], env["TOPIC_PILOTS"]))
    )
    processes = []
    servers: dict[str, tuple[int, psutil.Process]] = {}
    try:
        for name, arguments in SERVERS:
            port = free_port()
            command = [sys.executable, *arguments]
            if name == INTAKE:
                server_env = env | listening({"intake": port})
            else:
                command += ["--host", "127.0.0.1", "--port", str(port)]
                server_env = env
            processes.append(start(command, server_env, port))
            servers[name] = (port, psutil.Process(processes[-1].pid))
        measured, cpu = asyncio.run(measure(servers, run, requests, secret))
        results = {result.name: result for result in measured}
    finally:
        for process in processes:
            stop(process)
        asyncio.run(drop_database(env["MONGODB_DATABASE"]))
        asyncio.run(delete_topics(bootstrap, f"bench-{run}."))
    bare_rate, durable_rate = results[BARE].rate, results[DURABLE].rate
    intake = results[INTAKE]
    measurements: list[Measurement] = []
    for result in results.values():
        measurements += [
            Measurement(f"{result.name}: accepted/s", result.rate, "webhooks/s"),
            Measurement(f"{result.name}: p50", result.percentile(50), "ms"),
            Measurement(f"{result.name}: p95", result.percentile(95), "ms"),
            Measurement(f"{result.name}: p99", result.percentile(99), "ms"),
        ]
    cpu_measurements, cpu_notes = cpu_figures(results, cpu)
    share_measurements, share_notes = share_of_durable(results)
    measurements += cpu_measurements + share_measurements
    to_durable, to_bare, p99 = (
        intake.rate / durable_rate,
        intake.rate / bare_rate,
        intake.percentile(99),
    )
    return Section(
        "intake",
        f"Intake vs its ceilings: {requests:,} signed webhooks each, {CONCURRENCY} connections",
        measurements,
        [
            Verdict(
                "intake / durable ceiling",
                to_durable,
                TARGET_DURABLE_RATIO,
                to_durable >= TARGET_DURABLE_RATIO,
            ),
            Verdict(
                "intake / bare parse", to_bare, TARGET_BARE_RATIO, to_bare >= TARGET_BARE_RATIO
            ),
            Verdict("intake p99 ms (lower is better)", p99, TARGET_P99_MS, p99 < TARGET_P99_MS),
        ],
        [f"{name}: {r.accepted:,} accepted in {r.seconds:.1f} s" for name, r in results.items()]
        + cpu_notes
        + share_notes,
    )


def main() -> None:
    """`python -m bench.intake`."""
    run_alone(section)


if __name__ == "__main__":
    main()
