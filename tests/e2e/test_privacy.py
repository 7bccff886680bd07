"""The three services as processes, webhook to unsubscribe: no email address in any link, and
no address, token or secret in any line any service logged."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import httpx
import pytest

from tests.support import (
    Mailbox,
    ServiceProcess,
    Stack,
    announce_until_sent,
    assert_clean_exit,
    canonical_response,
    confirm_focal_points,
    confirmation_tokens,
    dumps,
    eventually,
    flood_pilot,
    signed_headers,
    start_service,
)

pytestmark = pytest.mark.e2e

WEBHOOK = "/v1/webhooks/generic/cities-2024-priorities"
SECRET_VARIABLE = "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC"
# Any address at all: the log lines must hold none, not only none of the ones used here.
ANY_EMAIL = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
LINK = re.compile(r"https?://[^\s\"'<>]+")


@pytest.fixture
def environment(stack: Stack, run_id: str) -> dict[str, str]:
    return {
        **stack.environment(run_id),
        SECRET_VARIABLE: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "PUBLIC_BASE_URL": "https://notify.example.org",
        # Every line any library writes, the SMTP conversation included.
        "LOG_LEVEL": "DEBUG",
    }


@pytest.fixture
def services(environment: dict[str, str], tmp_path: Path) -> Iterator[dict[str, ServiceProcess]]:
    started = {
        name: start_service(name, environment, tmp_path)
        for name in ("intake", "analytics", "notifier")
    }
    try:
        for service in started.values():
            service.wait_ready()
        yield started
    finally:
        for service in started.values():
            if service.process.poll() is None:
                assert_clean_exit(service, service.terminate())


def links_of(raw: bytes) -> list[str]:
    """Every link of an email: its `List-Unsubscribe` header and every part's URLs."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    found = LINK.findall(str(message["List-Unsubscribe"]))
    for part in message.walk():
        if part.get_content_maintype() == "text":
            found += LINK.findall(part.get_content())
    return found


def forms_of(address: str) -> list[str]:
    """The ways an address could show: as written, URL-encoded, base64 (with and without
    padding), and its local part."""
    encoded = base64.urlsafe_b64encode(address.encode()).decode()
    return [address, quote(address, safe=""), encoded, encoded.rstrip("="), address.split("@")[0]]


async def test_webhook_to_unsubscribe_no_personal_data_in_links_or_logs(
    services: dict[str, ServiceProcess], environment: dict[str, str], stack: Stack, run_id: str
) -> None:
    intake, analytics, notifier = (services[n].url for n in ("intake", "analytics", "notifier"))
    people = [
        f"privacy.leaving+{run_id}@example.org",
        f"Privacy.Staying.{run_id}@Example.org",
    ]
    operator = {"authorization": f"Bearer {environment['OPERATOR_TOKEN']}"}
    probe_token = secrets.token_urlsafe(24)
    mailbox = Mailbox(stack.mail_api)
    async with httpx.AsyncClient(timeout=15) as client:
        for number, email in enumerate(people):
            body = dumps(
                canonical_response(
                    f"privacy-{number}",
                    collaboration_interests=["climate-resilience"],
                    focal_point={"name": "Focal Point", "email": email, "consent": True},
                )
            )
            headers = signed_headers(body, f"privacy-{number}", environment[SECRET_VARIABLE])
            answer = await client.post(f"{intake}{WEBHOOK}", content=body, headers=headers)
            assert answer.status_code == 202, answer.text
        # Secrets sent where they do not belong still reach the access log's request line.
        refused = await client.post(
            f"{intake}/v1/webhooks/jotform/cities-2024-priorities?token={probe_token}", content=b"x"
        )
        assert 400 <= refused.status_code < 500
        unauthorised = await client.post(
            f"{intake}/v1/pilots", json={}, headers={"authorization": f"Bearer {probe_token}"}
        )
        assert unauthorised.status_code == 401

        async def total() -> int:
            answer = await client.get(f"{analytics}/v1/surveys/cities-2024-priorities/summary")
            return int(answer.json()["total"])

        await eventually(total, lambda n: n == len(people), within=60)
        # Double opt-in: the confirmation emails' links hold no address either.
        tokens = []
        for email in people:
            [(message_id, token)] = await eventually(
                lambda e=email: confirmation_tokens(mailbox, e), lambda found: len(found) == 1
            )
            for link in links_of(await mailbox.raw(message_id)):
                for form in forms_of(email) + forms_of(email.lower()):
                    assert form.lower() not in link.lower(), (form, link)
            tokens.append(token)
        await confirm_focal_points(client, mailbox, *people, notifier=notifier)
        pilot = flood_pilot(f"privacy-{run_id}", "https://example.org/pilots/privacy")
        await announce_until_sent(client, intake, notifier, pilot, sent=len(people))

        emails = {}
        for email in people:
            inbox = await eventually(lambda e=email: mailbox.messages_to(e), lambda m: len(m) == 1)
            emails[email] = await mailbox.raw(inbox[0]["ID"])
        for email, raw in emails.items():
            links = links_of(raw)
            unsubscribe = [link for link in links if "/v1/unsubscribe?" in link]
            assert unsubscribe, links
            for link in links:
                for form in forms_of(email) + forms_of(email.lower()):
                    assert form.lower() not in link.lower(), (form, link)
            tokens += [parse_qs(urlparse(link).query)["token"][0] for link in unsubscribe]

        # The leaving person follows the link: the page, then the one-click post.
        leaving_link = next(
            link for link in links_of(emails[people[0]]) if "/v1/unsubscribe?" in link
        )
        path = leaving_link.removeprefix(environment["PUBLIC_BASE_URL"])
        page = await client.get(f"{notifier}{path}")
        assert page.status_code == 200 and "<form" in page.text
        assert people[0].lower() not in page.text.lower()
        clicked = await client.post(f"{notifier}{path}")
        assert clicked.status_code == 200
        deliveries = await client.get(
            f"{notifier}/v1/deliveries", params={"pilot_id": pilot["pilot_id"]}, headers=operator
        )
        assert deliveries.status_code == 200

    for service in services.values():
        assert_clean_exit(service, service.terminate())
    logs = {name: service.log.read_text(errors="replace") for name, service in services.items()}
    # The lines that would carry the data are there, redacted: the scan can fail.
    assert "/v1/unsubscribe?token=***" in logs["notifier"]
    assert "/v1/webhooks/jotform/cities-2024-priorities?token=***" in logs["intake"]
    assert "POST /v1/pilots" in logs["intake"]
    assert "/v1/surveys/cities-2024-priorities/summary" in logs["analytics"]
    # At DEBUG the drivers log the documents they write: addresses reached the notifier's own
    # lines and were redacted there.
    assert "***@***" in logs["notifier"]
    secret_values = [
        environment["OPERATOR_TOKEN"],
        environment["UNSUBSCRIBE_SECRET"],
        environment["EMAIL_ID_SECRET"],
        environment[SECRET_VARIABLE],
        environment[SECRET_VARIABLE].removeprefix("whsec_"),
        probe_token,
        *tokens,
        *(token.split(".")[3] for token in tokens),  # the MACs on their own
    ]
    for name, text in logs.items():
        assert text.strip(), f"{name} logged nothing"
        for email in people:
            for form in forms_of(email) + forms_of(email.lower()):
                assert form.lower() not in text.lower(), (name, form)
        assert ANY_EMAIL.findall(text) == [], (name, ANY_EMAIL.findall(text)[:5])
        for value in secret_values:
            assert value not in text, (name, value[:6])
