"""Emails as the SMTP server receives them: language, direction, Date, and no header injection."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from typing import Any

import pytest

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from tests.integration.notifier_support import notifier_settings
from tests.support import (
    Mailbox,
    Stack,
    canonical_response,
    confirm_focal_points,
    eventually,
    produce,
    serving,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(stack: Stack, run_id: str) -> NotifierSettings:
    return notifier_settings(stack, run_id)


def raw_response(number: int, email: str, name: str, language: str) -> bytes:
    body = canonical_response(
        f"generic:{number}",
        focal_point={"name": name, "email": email, "language": language, "consent": True},
    )
    body.update(source="generic", received_at="2024-05-02T10:31:02Z")
    return json.dumps(body).encode()


def raw_pilot(pilot_id: str, title: str, summary: str = "") -> bytes:
    return json.dumps(
        {
            "pilot_id": pilot_id,
            "title": title,
            "summary": summary,
            "themes": ["climate-resilience"],
            "url": "https://example.org/pilots/crlf",
        }
    ).encode()


async def test_line_breaks_in_title_and_name_add_no_header(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    target = f"crlf-{run_id}@example.org"
    victims = [f"victim-{n}-{run_id}@example.org" for n in range(3)]
    name = f"An\r\nBcc: {victims[0]}"
    title = f"Flood\r\nBcc: {victims[1]}\nX-Injected: yes"
    summary = f"Line one\r\n\r\nBcc: {victims[2]}"
    mailbox = Mailbox(stack.mail_api)
    await produce(
        stack.kafka, settings.topic_responses, [(b"r1", raw_response(1, target, name, "en"))]
    )
    async with serving(create_app(settings)) as client:
        await confirm_focal_points(client, mailbox, target)
        await produce(
            stack.kafka,
            settings.topic_pilots,
            [(b"p", raw_pilot(f"crlf-{run_id}", title, summary))],
        )
        inbox = await eventually(lambda: mailbox.messages_to(target), lambda m: len(m) == 1)
    raw = await mailbox.raw(inbox[0]["ID"])
    sent = message_from_bytes(raw, policy=policy.default)
    header_block = raw.split(b"\r\n\r\n", 1)[0]

    assert sent["Subject"] == f"New pilot for your city: Flood Bcc: {victims[1]} X-Injected: yes"
    assert sent["Bcc"] is None
    assert sent["X-Injected"] is None
    assert b"\r\nBcc:" not in header_block
    assert sent["To"].addresses[0].display_name == f"An Bcc: {victims[0]}"
    # Mailpit's search also finds the text in the display name: count delivered addresses only.
    delivered = [[m for m in await mailbox.messages_to(v) if v in addresses(m)] for v in victims]
    assert delivered == [[], [], []]
    assert inbox[0]["Bcc"] is None  # the envelope had no other recipient


def addresses(summary: dict[str, Any]) -> set[str]:
    return {entry["Address"] for field in ("To", "Cc", "Bcc") for entry in summary.get(field) or []}


async def test_arabic_email_right_to_left_with_date(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    target = f"ar-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    await produce(
        stack.kafka,
        settings.topic_responses,
        [(b"r1", raw_response(1, target, "ليلى", "ar"))],
    )
    async with serving(create_app(settings)) as client:
        await confirm_focal_points(client, mailbox, target)
        await produce(stack.kafka, settings.topic_pilots, [(b"p", raw_pilot(f"ar-{run_id}", "T"))])
        inbox = await eventually(lambda: mailbox.messages_to(target), lambda m: len(m) == 1)
    sent = message_from_bytes(await mailbox.raw(inbox[0]["ID"]), policy=policy.default)
    html = sent.get_body(("html",)).get_content()

    assert sent["Content-Language"] == "ar"
    assert sent["Date"].datetime is not None
    # The title people wrote keeps its own direction (FSI ... PDI) in the Arabic subject.
    assert sent["Subject"] == "مشروع تجريبي جديد لمدينتكم: \u2068T\u2069"
    assert '<html lang="ar" dir="rtl">' in html
    assert "<li>التكيف مع تغير المناخ والقدرة على الصمود</li>" in html
