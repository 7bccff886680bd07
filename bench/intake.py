"""`make bench-intake`: sustained accepted webhooks/s and latency of one intake process, against
two ceilings measured with the same load generator in the same run: a bare FastAPI endpoint that
only parses the same JSON (the HTTP ceiling), and one that also does the least durable work a
webhook needs, one MongoDB insert and one acknowledged Kafka produce (`bench.ceiling`).

Every server runs as its own Uvicorn process on this machine; the load generator posts signed
generic webhooks, each a new response (so every one is claimed in MongoDB and published to
Kafka), from `CONCURRENCY` connections. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook

from bench.report import Measurement, Section, Verdict, run_alone
from shared import mongo
from shared.kafka import delete_topics, ensure_topics, topics_with_dlq

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "3000"))
WARMUP = 100
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
QUICK_REQUESTS = 400
TIME_LIMIT_SECONDS = 120.0
# Targets: against the durable ceiling, against the bare parse, and the slowest answers.
TARGET_DURABLE_RATIO = 0.8
TARGET_BARE_RATIO = 0.25
TARGET_P99_MS = 150.0
ROUNDS = 4
BARE = "bare FastAPI (parse only)"
DURABLE = "durable ceiling (insert + produce)"
INTAKE = "intake"
UVICORN = ["-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
SERVERS: list[tuple[str, list[str]]] = [
    (BARE, [*UVICORN, "bench.intake:bare"]),
    (DURABLE, [*UVICORN, "bench.ceiling:durable"]),
    (INTAKE, ["-m", "services.intake"]),
]
SURVEY = "cities-2024-priorities"
SECRET = "whsec_YmVuY2htYXJrYmVuY2htYXJrYmVuY2htYXJr"
REPO = Path(__file__).resolve().parent.parent

bare = FastAPI()


@bare.post("/v1/webhooks/{source}/{survey_id}", status_code=202)
async def parse_only(source: str, survey_id: str, request: Request) -> JSONResponse:
    """The baseline: read and parse the same JSON body, answer as the intake does."""
    payload = json.loads(await request.body())
    return JSONResponse({"response_id": payload.get("response_id"), "status": "accepted"}, 202)


@bare.get("/readyz")
async def ready() -> dict[str, str]:
    """Answers once the process serves."""
    return {"status": "ready"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _body(number: int, run: str) -> bytes:
    return json.dumps(
        {
            "response_id": f"bench-{run}-{number}",
            "survey_id": SURVEY,
            "submitted_at": "2024-05-02T10:31:00Z",
            "respondent": {
                "type": "local_government",
                "organization": "Da Nang People's Committee",
                "country": "VN",
                "city": "Đà Nẵng",
            },
            "development_priorities": ["sdg-11", "sdg-6"],
            "capacity_needs": ["urban-planning", "digital-governance"],
            "collaboration_interests": ["climate-resilience", "knowledge-exchange"],
            "answers": {"comments": "We would welcome peer learning."},
        },
        ensure_ascii=False,
    ).encode()


def signed_requests(count: int, run: str) -> list[tuple[bytes, dict[str, str]]]:
    """Bodies and Standard Webhooks headers, made before the clock starts."""
    signer = Webhook(SECRET)
    now = datetime.now(UTC)
    prepared = []
    for number in range(count):
        body = _body(number, run)
        message_id = f"msg-{run}-{number}"
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(message_id, now, body.decode()),
        }
        prepared.append((body, headers))
    return prepared


@dataclass(frozen=True)
class Result:
    """What one server sustained."""

    name: str
    accepted: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        """Accepted webhooks per second."""
        return self.accepted / self.seconds

    def percentile(self, p: int) -> float:
        """Latency percentile in milliseconds."""
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[p - 1]


class Connection:
    """One keep-alive HTTP/1.1 connection: a minimal client, so that the load generator costs
    little CPU next to the servers it measures (all share this machine)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        """Connect to 127.0.0.1:`port`."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        """Send one POST and read the whole answer; its status code."""
        lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self._reader.readexactly(length)
        return status

    async def close(self) -> None:
        """Close the connection (one the server reset is closed already)."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


async def load(name: str, port: int, prepared: list[tuple[bytes, dict[str, str]]]) -> Result:
    """Post every prepared request from `CONCURRENCY` connections; time the accepted ones."""
    path = f"/v1/webhooks/generic/{SURVEY}"
    pending = iter(prepared)
    latencies: list[float] = []
    failures: dict[int | str, int] = {}
    deadline = time.monotonic() + TIME_LIMIT_SECONDS

    async def worker() -> None:
        connection = await Connection.open(port)
        try:
            for body, headers in pending:
                if time.monotonic() > deadline:
                    return
                started = time.perf_counter()
                try:
                    status: int | str = await connection.post(path, body, headers)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    status = type(exc).__name__
                    await connection.close()
                    connection = await Connection.open(port)
                if status == 202:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    failures[status] = failures.get(status, 0) + 1
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    seconds = time.perf_counter() - started
    if failures:
        print(f"{name}: non-202 answers {failures}", file=sys.stderr)
    return Result(name, len(latencies), seconds, latencies)


def start(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """Start a server process and wait until `/readyz` answers 200."""
    log = Path(tempfile.mkstemp(prefix="bench-intake-", suffix=".log")[1])
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command[2]} exited:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"{command} was not ready in 60 s (is the stack up? `make stack-up`)")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


async def _drop_database(name: str) -> None:
    client = mongo.new_client(os.environ.get("MONGODB_URL", "mongodb://localhost:27017"))
    try:
        await client.drop_database(name)
    finally:
        await client.close()


async def measure(ports: dict[str, int], run: str, requests: int) -> list[Result]:
    """Warm every server up, then load them in alternating rounds, so that a change in the
    machine's load (it is shared) weighs on all alike."""
    for name, port in ports.items():
        await load(f"{name} warm-up", port, signed_requests(WARMUP, f"{run}-warm"))
    per_round = requests // ROUNDS
    totals = {name: Result(name, 0, 0.0, []) for name in ports}
    for number in range(ROUNDS):
        for name, port in ports.items():
            part = await load(name, port, signed_requests(per_round, f"{run}-{number}"))
            total = totals[name]
            totals[name] = Result(
                name,
                total.accepted + part.accepted,
                total.seconds + part.seconds,
                total.latencies_ms + part.latencies_ms,
            )
    return list(totals.values())


def section(quick: bool = False) -> Section:
    """Measure the three servers one after the other, in rounds, and hold the intake against
    both ceilings. `quick`: a short smoke run (a few hundred requests)."""
    requests = QUICK_REQUESTS if quick else REQUESTS
    run = uuid.uuid4().hex[:10]
    env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        "MONGODB_DATABASE": f"bench_{run}",
        "TOPIC_RESPONSES": f"bench-{run}.survey.responses.v1",
        "TOPIC_PILOTS": f"bench-{run}.pilots.announced.v1",
        "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": SECRET,
        "OPERATOR_TOKEN": secrets.token_urlsafe(32),  # none has a default; unused here
    }
    # As in a deployment, the topics exist before the first webhook (`shared.kafka_topics`).
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    asyncio.run(
        ensure_topics(bootstrap, topics_with_dlq(env["TOPIC_RESPONSES"], env["TOPIC_PILOTS"]))
    )
    processes = []
    ports: dict[str, int] = {}
    try:
        for name, arguments in SERVERS:
            port = _free_port()
            command = [sys.executable, *arguments]
            if name == INTAKE:
                server_env = {**env, "INTAKE_PORT": str(port), "INTAKE_HOST": "127.0.0.1"}
            else:
                command += ["--host", "127.0.0.1", "--port", str(port)]
                server_env = env
            processes.append(start(command, server_env, port))
            ports[name] = port
        results = {result.name: result for result in asyncio.run(measure(ports, run, requests))}
    finally:
        for process in processes:
            stop(process)
        asyncio.run(_drop_database(env["MONGODB_DATABASE"]))
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
        [f"{name}: {r.accepted:,} accepted in {r.seconds:.1f} s" for name, r in results.items()],
    )


def main() -> None:
    """`python -m bench.intake`."""
    run_alone(section)


if __name__ == "__main__":
    main()
