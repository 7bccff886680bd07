"""Pilots in six languages end to end on the real servers: announced through the intake's
`POST /v1/pilots`, published, matched by the notifier, received by the SMTP server."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from services.notifier.app import create_app as create_notifier
from services.notifier.emails import strings
from tests.integration.notifier_support import focal_response, notifier_settings, pilot, records
from tests.support import (
    OPERATOR,
    OPERATOR_TOKEN,
    Mailbox,
    Stack,
    confirm_focal_points,
    eventually,
    produce,
    read_topic,
    serving,
    settings_for,
)

pytestmark = pytest.mark.integration

FSI, PDI = "\u2068", "\u2069"
ARABIC = {
    "title": "الإنذار المبكر بالفيضانات في المناطق الساحلية",
    "summary": "صفارات إنذار ورسائل نصية للمناطق المنخفضة.",
    "url": "https://example.org/ar/pilots/007",
}


@pytest.fixture
def intake_settings(stack: Stack, run_id: str) -> IntakeSettings:
    return settings_for(IntakeSettings, stack.environment(run_id), operator_token=OPERATOR_TOKEN)


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


async def test_announce_pilot_arabic_reader_gets_arabic_or_english_said(
    stack: Stack, intake_settings: IntakeSettings, run_id: str
) -> None:
    reader = f"ar-{run_id}@example.org"
    translated = pilot(f"ar-{run_id}", translations={"ar": ARABIC})
    english_only = pilot(f"en-{run_id}", title=f"Green roofs {run_id}")
    settings = notifier_settings(stack, run_id)
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(focal_response(1, reader, interests=["climate-resilience"], language="ar")),
    )
    mailbox = Mailbox(stack.mail_api)
    notifier, announcer = create_notifier(settings), create_intake(intake_settings)
    async with serving(notifier) as client, serving(announcer) as intake:
        await confirm_focal_points(client, mailbox, reader)
        answers = [
            await intake.post(
                "/v1/pilots", json=announced.model_dump(mode="json"), headers=OPERATOR
            )
            for announced in (translated, english_only)
        ]
        inbox = await eventually(
            lambda: mailbox.messages_to(reader), lambda found: len(found) == 2, within=60
        )

    assert [answer.status_code for answer in answers] == [202, 202]
    sent: dict[str, Any] = {}
    for summary in inbox:
        message = message_from_bytes(await mailbox.raw(summary["ID"]), policy=policy.default)
        sent["ar" if ARABIC["title"] in str(message["Subject"]) else "en"] = message
    assert set(sent) == {"ar", "en"}
    fallback = strings("ar")["fallback"]

    # The Arabic translation reaches the Arabic reader, in Arabic, and nothing says otherwise.
    arabic_text, arabic_html = parts(sent["ar"])
    assert sent["ar"]["Content-Language"] == "ar"
    assert sent["ar"]["Subject"] == f"مشروع تجريبي جديد لمدينتكم: {FSI}{ARABIC['title']}{PDI}"
    assert f"{FSI}{ARABIC['summary']}{PDI}" in arabic_text
    assert f"<bdi>{ARABIC['title']}</bdi></h1>" in arabic_html
    assert f'<a href="{ARABIC["url"]}"' in arabic_html
    assert fallback not in arabic_text + arabic_html
    assert translated.title not in arabic_text + arabic_html

    # Without one, the English text, said so in Arabic, each English sentence in its own run.
    english_text, english_html = parts(sent["en"])
    assert sent["en"]["Content-Language"] == "ar"
    assert sent["en"]["Subject"] == f"مشروع تجريبي جديد لمدينتكم: {FSI}{english_only.title}{PDI}"
    assert f"{fallback}\n\n{FSI}{english_only.title}{PDI}\n" in english_text
    assert f"{FSI}{english_only.summary}{PDI}" in english_text
    assert f'>{fallback}</p>\n<h1 style="' in english_html
    assert f' lang="en"><bdi>{english_only.title}</bdi></h1>' in english_html
    assert '<html lang="ar" dir="rtl">' in english_html
    assert ">السيد/السيدة <bdi>Nguyễn Văn An</bdi>،</p>" in english_html


async def test_announce_pilot_translation_in_unknown_language_refused_naming_field(
    stack: Stack, intake_settings: IntakeSettings, run_id: str
) -> None:
    body = pilot(f"de-{run_id}").model_dump(mode="json")
    body["translations"] = {"de": {"title": "Hochwasserwarnung"}, "fr": {"title": ""}}

    async with serving(create_intake(intake_settings)) as intake:
        refused = await intake.post("/v1/pilots", json=body, headers=OPERATOR)
        described = (await intake.get("/openapi.json")).json()

    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert sorted(error["field"] for error in refused.json()["errors"]) == [
        "translations.de.[key]",
        "translations.fr.title",
    ]
    assert await read_topic(stack.kafka, intake_settings.topic_pilots, idle_seconds=1) == []
    translations = described["components"]["schemas"]["PilotAnnounced"]["properties"]
    assert translations["translations"]["propertyNames"]["enum"] == ["fr", "es", "ar", "zh", "ru"]
