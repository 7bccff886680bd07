"""Where the time goes: py-spy flame graphs of the three services under load, as SVG in
docs/flamegraphs/.

Each service runs as its own process; once it is ready, `py-spy record --pid` samples it from
outside, 100 times a second, without changing the code it samples (start-up is left out: under
a sampler it takes many times longer and is not what runs in production). The load is what a
campaign brings: new responses with consenting focal points posted to the intake from 32
connections (the intake publishes them, analytics counts them, the notifier registers the focal
points), then a pilot announced through the intake for the notifier to match. Once the work is
done, py-spy is interrupted (it writes the graph then) and each service stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from bench.load import (
    SURVEY,
    drop_database,
    free_port,
    listening,
    load,
    new_webhook_secret,
    service_environment,
    signed,
    start_all,
    stop,
    webhook_body,
)
from bench.report import Measurement, Section
from services.analytics.settings import AnalyticsSettings
from services.intake.settings import IntakeSettings
from services.notifier.settings import NotifierSettings
from shared.kafka import delete_topics, ensure_topics, topics_with_dlq

SERVICES = ("intake", "analytics", "notifier")
SETTINGS = (IntakeSettings, AnalyticsSettings, NotifierSettings)
RESPONSES, QUICK_RESPONSES = 4000, 300
OUTPUT = Path("docs/flamegraphs")
QUICK_OUTPUT = Path("bench-results/flamegraphs")
TIME_LIMIT_SECONDS = 180.0
PILOT = {
    "pilot_id": "bench-pilot",
    "title": "Flood early warning for coastal districts",
    "summary": "Sirens and SMS alerts for low-lying districts.",
    "themes": ["climate-resilience"],
    "sdgs": ["sdg-13"],
    "eligible_countries": ["VN"],
    "lead_agency": "UNOSSC",
    "apply_by": "2099-03-31",
    "url": "https://example.org/pilots/bench",
}


def sample(process: subprocess.Popen[bytes], graph: Path) -> subprocess.Popen[bytes]:
    """Start py-spy on the running `process`, writing its flame graph to `graph` when stopped."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    command = [py_spy, "record", "--rate", "100", "--format", "flamegraph",
               "--output", str(graph), "--pid", str(process.pid)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_sampling(sampler: subprocess.Popen[bytes]) -> None:
    """Interrupt py-spy as Control-C would: it stops sampling and writes its graph."""
    sampler.send_signal(signal.SIGINT)
    try:
        sampler.wait(timeout=60)
    except subprocess.TimeoutExpired:
        sampler.kill()


async def drive(ports: dict[str, int], run: str, secret: str, count: int, token: str) -> float:
    """Post `count` new responses with focal points, wait until analytics counts them all,
    then announce a pilot; the seconds the load took."""
    bodies = [webhook_body(n, run, focal_point=True) for n in range(count)]
    started = time.monotonic()
    result = await load("profile", ports["intake"], signed(bodies, run, secret))
    if result.accepted != count:
        raise RuntimeError(f"the intake accepted {result.accepted} of {count}")
    async with httpx.AsyncClient(timeout=10) as client:
        deadline = time.monotonic() + TIME_LIMIT_SECONDS
        while time.monotonic() < deadline:
            answer = await client.get(f"http://127.0.0.1:{ports['analytics']}/v1/surveys")
            totals = {s["survey_id"]: s["total"] for s in answer.json()}
            if totals.get(SURVEY, 0) >= count:
                break
            await asyncio.sleep(0.5)
        else:
            raise TimeoutError(f"analytics counted {totals.get(SURVEY, 0)} of {count}")
        announced = await client.post(
            f"http://127.0.0.1:{ports['intake']}/v1/pilots",
            json=PILOT,
            headers={"authorization": f"Bearer {token}"},
        )
        announced.raise_for_status()
    await asyncio.sleep(5)  # the notifier matches and queues the pilot's emails meanwhile
    return time.monotonic() - started


def section(quick: bool = False) -> Section:
    """Sample the three services under one load; the graphs' paths are in the section's notes."""
    run = uuid.uuid4().hex[:10]
    secret = new_webhook_secret()
    output = QUICK_OUTPUT if quick else OUTPUT
    output.mkdir(parents=True, exist_ok=True)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    ports = {service: free_port() for service in SERVICES}
    env = service_environment(run, secret) | listening(ports)
    topics = topics_with_dlq(env["TOPIC_RESPONSES"], env["TOPIC_PILOTS"])
    asyncio.run(ensure_topics(bootstrap, topics))
    count = QUICK_RESPONSES if quick else RESPONSES
    graphs = {service: output / f"{service}.svg" for service in SERVICES}
    processes, samplers = [], []
    try:
        processes = start_all(
            [([sys.executable, "-m", f"services.{s}"], env, ports[s]) for s in SERVICES]
        )
        samplers = [sample(p, graphs[s]) for p, s in zip(processes, SERVICES, strict=True)]
        seconds = asyncio.run(drive(ports, run, secret, count, env["OPERATOR_TOKEN"]))
    finally:
        for sampler in samplers:
            stop_sampling(sampler)
        for process in processes:
            stop(process)
        asyncio.run(drop_database(env["MONGODB_DATABASE"]))
        asyncio.run(delete_topics(bootstrap, f"bench-{run}."))
    missing = [str(graph) for graph in graphs.values() if not graph.exists()]
    if missing:
        raise RuntimeError(f"py-spy wrote no flame graph: {missing}")
    return Section(
        "profiles",
        f"Where the time goes: flame graphs under a load of {count:,} responses and a pilot",
        [Measurement("load: responses posted, counted, pilot matched", seconds, "s")],
        [],
        [f"[{service}]({graph.relative_to(output.parent)})" for service, graph in graphs.items()],
    )
