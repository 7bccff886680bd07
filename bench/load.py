"""The load generator and process handling every HTTP benchmark shares: signed generic
webhooks made before the clock starts, a minimal keep-alive HTTP/1.1 client (so the generator
costs little CPU next to the servers it measures, all on one machine), a closed-loop load from
many connections, and servers started as their own processes and waited for.
"""

from __future__ import annotations

import asyncio
import base64
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings
from standardwebhooks.webhooks import Webhook

from services.analytics.settings import AnalyticsSettings
from services.intake.settings import IntakeSettings
from services.notifier.settings import NotifierSettings
from shared import mongo

S = TypeVar("S", bound=BaseSettings)

SURVEY = "cities-2024-priorities"
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
TIME_LIMIT_SECONDS = 120.0
REPO = Path(__file__).resolve().parent.parent
WEBHOOK_PATH = f"/v1/webhooks/generic/{SURVEY}"
PLACES = [
    ("VN", "Đà Nẵng", "Da Nang People's Committee"),
    ("KE", "Nairobi", "Nairobi City County"),
    ("BR", "Recife", "Prefeitura do Recife"),
    ("ID", "Surabaya", "Surabaya City Government"),
    ("SN", "Dakar", "Ville de Dakar"),
]
SERVICE_SETTINGS = (IntakeSettings, AnalyticsSettings, NotifierSettings)


def new_webhook_secret() -> str:
    """A random Standard Webhooks secret for one run (no secret is ever fixed)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def webhook_body(
    number: int, run: str, submitted_at: str = "2024-05-02T10:31:00Z", *, focal_point: bool = False
) -> bytes:
    """A new generic response, `number` of run `run`; with a consenting focal point if asked."""
    country, city, organization = PLACES[number % len(PLACES)]
    body: dict[str, object] = {
        "response_id": f"bench-{run}-{number}",
        "survey_id": SURVEY,
        "submitted_at": submitted_at,
        "respondent": {
            "type": "local_government",
            "organization": organization,
            "country": country,
            "city": city,
        },
        "development_priorities": ["sdg-11", "sdg-6", "sdg-13"][: 1 + number % 3],
        "capacity_needs": ["urban-planning", "digital-governance"],
        "collaboration_interests": ["climate-resilience", "knowledge-exchange"],
        "answers": {"comments": f"Response {number} of a benchmark run."},
    }
    if focal_point:
        body["focal_point"] = {
            "name": f"Focal Point {number}",
            "email": f"fp-{run}-{number}@bench.example.org",
            "language": ["en", "fr", "es", "ar", "zh", "ru"][number % 6],
            "consent": True,
        }
    return json.dumps(body, ensure_ascii=False).encode()


def signed(bodies: list[bytes], run: str, secret: str) -> list[tuple[bytes, dict[str, str]]]:
    """The bodies with Standard Webhooks headers, made before the clock starts."""
    signer = Webhook(secret)
    now = datetime.now(UTC)
    prepared = []
    for number, body in enumerate(bodies):
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


def signed_requests(count: int, run: str, secret: str) -> list[tuple[bytes, dict[str, str]]]:
    """`count` new responses, signed."""
    return signed([webhook_body(number, run) for number in range(count)], run, secret)


async def load(
    name: str,
    port: int,
    prepared: list[tuple[bytes, dict[str, str]]],
    *,
    connections: int = CONCURRENCY,
    expected: int = 202,
) -> Result:
    """Post every prepared request from `connections` connections; time those answered
    `expected` (202: accepted; 200 for redeliveries)."""
    path = WEBHOOK_PATH
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
                if status == expected:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    failures[status] = failures.get(status, 0) + 1
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    seconds = time.perf_counter() - started
    if failures:
        print(f"{name}: answers other than {expected}: {failures}", file=sys.stderr)
    return Result(name, len(latencies), seconds, latencies)


def start(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """Start a server process and wait until `/readyz` answers 200."""
    return start_all([(command, env, port)])[0]


def start_all(
    servers: list[tuple[list[str], dict[str, str], int]],
) -> list[subprocess.Popen[bytes]]:
    """Start server processes together (command, environment, port) and wait until each
    `/readyz` answers 200; a server that exits or is not ready in 60 s stops them all."""
    started: list[tuple[subprocess.Popen[bytes], Path, int]] = []
    names = {}
    for command, env, port in servers:
        log = Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1])
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out)
        started.append((process, log, port))
        names[process.pid] = " ".join(command[1:])
    deadline = time.monotonic() + 60
    try:
        for process, log, port in started:
            while not _ready(process, log, port, names[process.pid]):
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"{names[process.pid]} was not ready in 60 s (is the stack up?)"
                    )
                time.sleep(0.3)
    except BaseException:
        for process, _, _ in started:
            process.kill()
        raise
    return [process for process, _, _ in started]


def _ready(process: subprocess.Popen[bytes], log: Path, port: int, name: str) -> bool:
    if process.poll() is not None:
        raise SystemExit(f"{name} exited:\n{log.read_text(errors='replace')[-2000:]}")
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


async def drop_database(name: str) -> None:
    """Drop a benchmark's database."""
    client = mongo.new_client(os.environ.get("MONGODB_URL", "mongodb://localhost:27017"))
    try:
        await client.drop_database(name)
    finally:
        await client.close()


def service_environment(run: str, webhook_secret: str) -> dict[str, str]:
    """The environment of services isolated to one benchmark run: their own database, topics
    and consumer groups, the run's webhook secret and a random value for every other secret."""
    return {
        **os.environ,
        **random_secrets(*SERVICE_SETTINGS),
        "LOG_LEVEL": "WARNING",
        "MONGODB_DATABASE": f"bench_{run}",
        "TOPIC_RESPONSES": f"bench-{run}.survey.responses.v1",
        "TOPIC_PILOTS": f"bench-{run}.pilots.announced.v1",
        "TOPIC_REVIEWS": f"bench-{run}.survey.reviews.v1",
        "TOPIC_ERASURES": f"bench-{run}.privacy.erasures.v1",
        "ANALYTICS_GROUP_ID": f"bench-analytics-{run}",
        "NOTIFIER_GROUP_ID": f"bench-notifier-{run}",
        "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": webhook_secret,
    }


def listening(ports: dict[str, int]) -> dict[str, str]:
    """The host and port settings of services by name, on the loopback interface."""
    return {
        **{f"{service.upper()}_HOST": "127.0.0.1" for service in ports},
        **{f"{service.upper()}_PORT": str(port) for service, port in ports.items()},
    }


def random_secrets(*settings_classes: type[BaseSettings]) -> dict[str, str]:
    """A random value for every secret the services require (none has a default), by the
    environment name each settings class reads, so a benchmark starts whatever secrets a
    service gains."""
    names = {
        name.upper()
        for settings_class in settings_classes
        for name, field in settings_class.model_fields.items()
        if field.is_required() and field.annotation is SecretStr
    }
    return {name: secrets.token_urlsafe(32) for name in sorted(names)}


def with_random_secrets(settings_class: type[S], **fields: Any) -> S:
    """A service's settings as the environment gives them, a random value for every secret it
    requires, and `fields` on top (a benchmark's own database, topics and groups)."""
    secret_fields: dict[str, Any] = {
        name.lower(): value for name, value in random_secrets(settings_class).items()
    }
    return settings_class(**(secret_fields | fields))
