"""Access over real HTTP and real process starts: secrets fail closed, credentials are checked
before a body is read, and every body is capped."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from services.notifier.registry import Registry
from services.notifier.unsubscribe import opaque_id
from shared import mongo
from shared.events import SurveyResponse
from shared.personal import EmailKeys
from tests.support import (
    REPO,
    ServiceProcess,
    Stack,
    assert_clean_exit,
    canonical_response,
    start_service,
)

pytestmark = pytest.mark.integration

FIVE_MIB = 5 * 1024 * 1024
KOBO_SECRET_VARIABLE = "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_KOBOTOOLBOX"
BODY_LIMIT = 64 * 1024


def start_refused(name: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `python -m services.<name>` with only `environment` (no inherited secret)."""
    inherited = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME")}
    return subprocess.run(
        [sys.executable, "-m", f"services.{name}"],
        cwd=REPO,
        env={**inherited, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "remove", "value", "line"),
    [
        (
            "notifier",
            "UNSUBSCRIBE_SECRET",
            None,
            "notifier: refusing to start: UNSUBSCRIBE_SECRET is not set: it has no default",
        ),
        (
            "notifier",
            "UNSUBSCRIBE_SECRET",
            "change-me-in-production",
            "notifier: refusing to start: UNSUBSCRIBE_SECRET is a known placeholder: "
            "set it to a random value of its own",
        ),
        (
            "notifier",
            "UNSUBSCRIBE_SECRET",
            "dev-unsubscribe-secret",
            "notifier: refusing to start: UNSUBSCRIBE_SECRET is a known placeholder: "
            "set it to a random value of its own",
        ),
        (
            "notifier",
            "EMAIL_ID_SECRET",
            "short-but-random-q8Zr",
            "notifier: refusing to start: EMAIL_ID_SECRET is shorter than 32 bytes: "
            "set a longer random value",
        ),
        (
            "intake",
            "OPERATOR_TOKEN",
            None,
            "intake: refusing to start: OPERATOR_TOKEN is not set: it has no default",
        ),
        (
            "intake",
            "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC",
            "whsec_qEhDZKFlDI5dTKHTZQl5SavkdOUgL3xH",
            "intake: refusing to start: WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC is a "
            "known placeholder",
        ),
    ],
    ids=[
        "notifier-no-unsubscribe-secret",
        "notifier-old-default",
        "notifier-old-dev-value",
        "notifier-short-email-id-secret",
        "intake-no-operator-token",
        "intake-shipped-webhook-secret",
    ],
)
def test_start_bad_secret_refused_with_one_line(
    stack: Stack, run_id: str, name: str, remove: str, value: str | None, line: str
) -> None:
    environment = stack.environment(run_id)
    environment.pop(remove, None)
    if value is not None:
        environment[remove] = value

    finished = start_refused(name, environment)

    assert finished.returncode == 2, finished.stderr
    assert finished.stderr.splitlines() == [line]
    assert "Traceback" not in finished.stderr
    if value is not None:
        assert value not in finished.stderr


@pytest.fixture
def services(stack: Stack, run_id: str, tmp_path: Path) -> Iterator[dict[str, ServiceProcess]]:
    environment = {
        **stack.environment(run_id),
        "MAX_BODY_BYTES": str(BODY_LIMIT),
        KOBO_SECRET_VARIABLE: secrets.token_urlsafe(32),
        "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": "whsec_"
        + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    started = {name: start_service(name, environment, tmp_path) for name in ("intake", "notifier")}
    try:
        for service in started.values():
            service.wait_ready()
        yield started
    finally:
        for service in started.values():
            assert_clean_exit(service, service.terminate())


def partial_request(url: str, head: str, sent: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a request's head and only `sent` of its body, then read the answer: a server that
    waited for the rest of the body would time out here."""
    address = urlparse(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(head.encode() + b"\r\n" + sent)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            assert chunk, f"connection closed without an answer: {received!r}"
            received += chunk
        header_block, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
        headers = {
            key.strip().lower(): value.strip()
            for key, _, value in (line.partition(":") for line in header_lines)
        }
        while len(body) < int(headers.get("content-length", "0")):
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(status_line.split()[1]), headers, body


def head(method: str, path: str, *extra: str, length: int = FIVE_MIB) -> str:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *extra,
    ]
    return "\r\n".join(lines) + "\r\n"


def test_operator_endpoints_without_token_401_before_body(
    services: dict[str, ServiceProcess],
) -> None:
    intake, notifier = services["intake"].url, services["notifier"].url
    for url, request in [
        (intake, head("POST", "/v1/pilots")),
        (intake, head("POST", "/v1/pilots", "Authorization: Bearer not-the-token")),
        (notifier, head("GET", "/v1/deliveries?pilot_id=p1")),
        # A webhook whose credential is a header is checked before its body too.
        (intake, head("POST", "/v1/webhooks/kobotoolbox/cities-2024-priorities")),
        (
            intake,
            head(
                "POST",
                "/v1/webhooks/kobotoolbox/cities-2024-priorities",
                "X-Webhook-Token: not-the-secret",
            ),
        ),
    ]:
        status, headers, body = partial_request(url, request, b'{"pilot_id": "p')

        assert status == 401, (request, body)
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["title"] == "Unauthorized"


def test_unsubscribe_link_of_first_format_410_forged_400(
    services: dict[str, ServiceProcess], stack: Stack, run_id: str
) -> None:
    # The first format carried the address; even signed with the right key it is refused.
    key = stack.environment(run_id)["UNSUBSCRIBE_SECRET"]
    payload = b64(f"first-format-{run_id}@example.org".encode())
    mac = hmac.new(key.encode(), b"unsubscribe:" + payload.encode(), hashlib.sha256).digest()
    url = f"{services['notifier'].url}/v1/unsubscribe"

    outdated = httpx.post(url, params={"token": f"{payload}.{b64(mac)}"}, timeout=10)
    forged = httpx.post(url, params={"token": "v1.AAAAAAAA." + "A" * 22 + "." + "A" * 43})

    assert outdated.status_code == 410
    assert outdated.headers["content-type"] == "application/problem+json"
    assert "older format" in outdated.json()["detail"]
    assert forged.status_code == 400


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_operator_endpoint_with_token_over_limit_413_before_body(
    services: dict[str, ServiceProcess], stack: Stack, run_id: str
) -> None:
    token = stack.environment(run_id)["OPERATOR_TOKEN"]
    request = head("POST", "/v1/pilots", f"Authorization: Bearer {token}")

    status, headers, body = partial_request(services["intake"].url, request, b"{")

    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["detail"] == f"the body must be at most {BODY_LIMIT} bytes"


def test_endpoints_streamed_body_over_limit_413(
    services: dict[str, ServiceProcess], stack: Stack, run_id: str
) -> None:
    token = stack.environment(run_id)["OPERATOR_TOKEN"]

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the limit is found while reading.
        yield b'{"pilot_id": "'
        for _ in range(4 * BODY_LIMIT // 4096):
            yield b"x" * 4096

    cases = [
        (f"{services['intake'].url}/v1/pilots", {"authorization": f"Bearer {token}"}),
        (f"{services['intake'].url}/v1/webhooks/generic/cities-2024-priorities", {}),
    ]
    for url, headers in cases:
        answer = httpx.post(
            url,
            content=chunks(),
            headers={"content-type": "application/json", **headers},
            timeout=10,
        )

        assert answer.status_code == 413, (url, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"


def test_operator_endpoint_with_token_within_limit_read(
    services: dict[str, ServiceProcess], stack: Stack, run_id: str
) -> None:
    token = stack.environment(run_id)["OPERATOR_TOKEN"]

    answer = httpx.post(
        f"{services['intake'].url}/v1/pilots",
        json={"pilot_id": "incomplete"},
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )

    assert answer.status_code == 422  # read and validated: every missing field is named
    assert {error["field"] for error in answer.json()["errors"]} >= {"title", "url"}


async def test_link_lookup_finds_focal_point_by_opaque_id(stack: Stack, run_id: str) -> None:
    email = f"Link.Lookup-{run_id}@Example.org"
    body = canonical_response(
        "generic:link",
        focal_point={"name": "Focal Point", "email": email, "language": "fr", "consent": True},
    )
    response = SurveyResponse.model_validate(
        {**body, "source": "generic", "received_at": datetime.now(UTC)}
    )
    client = mongo.new_client(stack.mongodb_url)
    environment = stack.environment(run_id)
    registry = Registry(
        mongo.database(client, f"test_{run_id}"), EmailKeys(environment["EMAIL_KEY_SECRET"])
    )
    try:
        record = await registry.register(response)
        assert record is not None
        link_id = opaque_id(record.key, environment["EMAIL_ID_SECRET"])
        assert await registry.by_link(link_id) is None  # no link sent yet

        await registry.remember_link(link_id, record.key)
        await registry.remember_link(link_id, record.key)  # the next email: no change
        found = await registry.by_link(link_id)

        assert found is not None and found.key == registry.key(email)
        assert found.email is not None and found.email.lower() == email.lower()
        assert found.survey_language == "fr"
        other = opaque_id(registry.key("other@example.org"), "k" * 40)
        assert await registry.by_link(other) is None
    finally:
        await client.close()
