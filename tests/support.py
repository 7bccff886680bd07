"""Helpers for tests against the real stack: endpoints, service settings, mailbox, polling."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic_settings import BaseSettings
from standardwebhooks.webhooks import Webhook

from shared.kafka import delete_topics as delete_topics  # tests reach it here too
from shared.kafka_security import KafkaSecurity, kafka_security

T = TypeVar("T")
S = TypeVar("S", bound=BaseSettings)

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# The services' secrets differ for every pytest process, the link keys for every test run too
# (none has a default). One operator token serves every service of the process: tests send it.
_RUN_SECRETS_KEY = secrets.token_bytes(32)
SECRET_VARIABLES = (
    "UNSUBSCRIBE_SECRET",
    "EMAIL_ID_SECRET",
    "EMAIL_KEY_SECRET",
    "POSTMARK_WEBHOOK_SECRET",
)
OPERATOR_TOKEN = secrets.token_urlsafe(32)
OPERATOR = {"authorization": f"Bearer {OPERATOR_TOKEN}"}  # sees every analytics cell


def run_secret(run_id: str, name: str) -> str:
    """A random secret for `name` in this test run: the same for every call with `run_id`."""
    digest = hmac.new(_RUN_SECRETS_KEY, f"{run_id}:{name}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Stack:
    """Where the real servers are."""

    kafka: str
    mongodb_url: str
    smtp_host: str
    smtp_port: int
    mail_api: str

    def environment(self, run_id: str) -> dict[str, str]:
        """Settings for services isolated to one test: their own topics, database and secrets."""
        return {
            **{name: run_secret(run_id, name) for name in SECRET_VARIABLES},
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "MONGODB_URL": self.mongodb_url,
            "MONGODB_DATABASE": f"test_{run_id}",
            "TOPIC_RESPONSES": f"test-{run_id}.survey.responses.v1",
            "TOPIC_PILOTS": f"test-{run_id}.pilots.announced.v1",
            "TOPIC_ERASURES": f"test-{run_id}.privacy.erasures.v1",
            "TOPIC_REVIEWS": f"test-{run_id}.survey.reviews.v1",
            "SMTP_HOST": self.smtp_host,
            "SMTP_PORT": str(self.smtp_port),
            "ANALYTICS_GROUP_ID": f"analytics-{run_id}",
            "NOTIFIER_GROUP_ID": f"notifier-{run_id}",
            "OPERATOR_TOKEN": OPERATOR_TOKEN,
        }


def settings_for(settings_class: type[S], environment: dict[str, str], **overrides: Any) -> S:
    """A service's settings from an environment dict (names as in DESIGN.md), plus overrides."""
    fields = {name.lower(): value for name, value in environment.items()}
    return settings_class(**{**fields, **overrides})


def signed_headers(body: bytes, message_id: str, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """Standard Webhooks headers, made with the reference library (not with our code)."""
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body.decode()),
    }


def canonical_response(response_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid generic webhook body (DESIGN.md's example), with overrides."""
    body: dict[str, Any] = {
        "response_id": response_id,
        "survey_id": "cities-2024-priorities",
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
    }
    body.update(overrides)
    return body


class Mailbox:
    """The SMTP server's received messages, read through Mailpit's REST API."""

    def __init__(self, api: str) -> None:
        self._api = api.rstrip("/")

    async def messages_to(self, address: str) -> list[dict[str, Any]]:
        """Summaries of every message received for `address`."""
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(
                f"{self._api}/api/v1/search", params={"query": f'to:"{address}"', "limit": 200}
            )
            response.raise_for_status()
            messages: list[dict[str, Any]] = response.json()["messages"]
            return messages

    async def messages_of_run(self, run_id: str) -> list[dict[str, Any]]:
        """Summaries of every message for this run's addresses (`...@<run_id>.example.org`),
        page by page."""
        found: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                answer = await client.get(
                    f"{self._api}/api/v1/search",
                    params={
                        "query": f'to:"@{run_id}.example.org"',
                        "start": len(found),
                        "limit": 200,
                    },
                )
                answer.raise_for_status()
                page: list[dict[str, Any]] = answer.json()["messages"]
                found.extend(page)
                if not page:
                    return found

    async def raw(self, message_id: str) -> bytes:
        """The message as received (headers and MIME body)."""
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{self._api}/api/v1/message/{message_id}/raw")
            response.raise_for_status()
            return response.content

    async def delete(self, message_ids: list[str]) -> None:
        """Delete these messages (and no other) from the server."""
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.request(
                "DELETE", f"{self._api}/api/v1/messages", json={"IDs": message_ids}
            )
            response.raise_for_status()


CONFIRM_LINK = re.compile(r"/v1/confirm\?token=([A-Za-z0-9_.-]+)")


async def confirmation_tokens(mailbox: Mailbox, address: str) -> list[tuple[str, str]]:
    """(message id, token) of every confirmation email `address` received."""
    found = []
    for message in await mailbox.messages_to(address):
        sent = message_from_bytes(await mailbox.raw(message["ID"]), policy=policy.default)
        assert isinstance(sent, EmailMessage)
        text = sent.get_body(("plain",))
        link = CONFIRM_LINK.search(str(text.get_content()) if text else "")
        if link:
            found.append((str(message["ID"]), link.group(1)))
    return found


async def confirm_focal_points(
    client: httpx.AsyncClient, mailbox: Mailbox, *addresses: str, notifier: str = ""
) -> None:
    """Double opt-in as each person does it: open the one confirmation email they received,
    post the form behind its link (at `notifier`, else the client's base URL), then delete that
    email, so that the test goes on counting pilot emails alone."""
    for address in addresses:
        [(message_id, token)] = await eventually(
            lambda a=address: confirmation_tokens(mailbox, a), lambda found: len(found) >= 1
        )
        answer = await client.post(f"{notifier}/v1/confirm", params={"token": token})
        assert answer.status_code == 200, answer.text
        await mailbox.delete([message_id])


def flood_pilot(pilot_id: str, url: str) -> dict[str, Any]:
    """A `POST /v1/pilots` body: an open climate-resilience pilot for Viet Nam."""
    return {
        "pilot_id": pilot_id,
        "title": "Flood early warning for coastal districts",
        "summary": "Co-financed early warning.",
        "themes": ["climate-resilience"],
        "sdgs": ["sdg-13"],
        "eligible_countries": ["VN"],
        "lead_agency": "UNOSSC",
        "apply_by": "2099-12-31",
        "url": url,
    }


async def announce_until_sent(
    client: httpx.AsyncClient, intake: str, notifier: str, pilot: dict[str, Any], sent: int
) -> None:
    """Announce `pilot` through the intake and wait until the notifier reports `sent` emails."""
    announced = await client.post(f"{intake}/v1/pilots", json=pilot, headers=OPERATOR)
    assert announced.status_code == 202, announced.text

    async def counts() -> dict[str, int]:
        answer = await client.get(
            f"{notifier}/v1/deliveries", params={"pilot_id": pilot["pilot_id"]}, headers=OPERATOR
        )
        return dict(answer.json()["counts"])

    await eventually(counts, lambda c: c == {"sent": sent}, within=60)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    within: float = 30.0,
    interval: float = 0.2,
) -> T:
    """Poll `probe` until `until(value)` holds; fail with the last value after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {value!r}")
        await asyncio.sleep(interval)


def dumps(body: dict[str, Any]) -> bytes:
    """JSON bytes as a platform would send them."""
    return json.dumps(body, ensure_ascii=False).encode()


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run `app`'s lifespan (its consumers and clients) and give an HTTP client to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes, bytes]],
    *,
    security: KafkaSecurity | None = None,
) -> None:
    """Write `(key, value)` records to `topic` and wait for the broker's acknowledgement."""
    options = (security or kafka_security()).client_options()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    idle_seconds: float = 3.0,
    security: KafkaSecurity | None = None,
) -> list[Any]:
    """Every record of `topic` from the start, once no new one came for `idle_seconds`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **(security or kafka_security()).client_options(),
    )
    await consumer.start()
    records: list[Any] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_seconds * 1000))
            if not batch:
                return records
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()


REPO = Path(__file__).resolve().parent.parent
SHUTDOWN_BOUND_SECONDS = 10  # operators' contract: SIGTERM stops a service within 10 s


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServiceProcess:
    """One service run as operators run it: `python -m services.<name>` in its own process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        """The end of its log, for assertion messages."""
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self, within: float = 60.0) -> None:
        """Block until `/readyz` answers 200; fail with the log if it dies or takes too long."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not ready in {within}s:\n{self.log_tail()}")

    def terminate(self) -> int:
        """SIGTERM, and the exit code once it stopped (within the operators' bound)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=SHUTDOWN_BOUND_SECONDS)


def start_service(name: str, environment: dict[str, str], log_dir: Path) -> ServiceProcess:
    """Start a service on a free port with `environment` added to ours; not yet ready."""
    port = free_port()
    env = {
        **os.environ,
        **environment,
        f"{name.upper()}_PORT": str(port),
        f"{name.upper()}_HOST": "127.0.0.1",
    }
    log = log_dir / f"{name}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return ServiceProcess(name, f"http://127.0.0.1:{port}", process, log)


def assert_clean_exit(service: ServiceProcess, code: int) -> None:
    """Uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean exit too."""
    assert code in (0, -signal.SIGTERM), service.log_tail()
    assert "Application shutdown complete" in service.log.read_text(), service.name


def run_service_command(
    name: str, command: str, environment: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m services.<name> <command>` with `environment` added to ours, to its end."""
    return subprocess.run(
        [sys.executable, "-m", f"services.{name}", command],
        cwd=REPO,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def metric(text: str, name: str, **labels: str) -> float:
    """The value of sample `name` with exactly these labels in a Prometheus text exposition (a
    service's `/metrics`); 0 when absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and dict(sample.labels) == labels:
                return float(sample.value)
    return 0.0
