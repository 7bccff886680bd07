"""Preferences on the real MongoDB-wire and SMTP servers: the weekly digest (held until its
time, then one email, once), and the preference form's unsubscribe and refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from urllib.parse import parse_qs, urlparse

import pytest

from services.notifier import consent
from services.notifier.app import create_app
from services.notifier.deliveries import DELIVERIES
from services.notifier.registry import Registry
from services.notifier.settings import NotifierSettings
from services.notifier.unsubscribe import CONFIRM
from services.notifier.wiring import Wiring, wire
from shared import mongo
from tests.integration.notifier_support import focal_response, notifier_settings, pilot, records
from tests.support import (
    OPERATOR_TOKEN,
    Mailbox,
    Stack,
    confirm_focal_points,
    confirmation_tokens,
    eventually,
    produce,
    serving,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(stack: Stack, run_id: str) -> NotifierSettings:
    return notifier_settings(stack, run_id, operator_token=OPERATOR_TOKEN, send_rate_per_second=0)


@pytest.fixture
async def wiring(settings: NotifierSettings) -> AsyncIterator[Wiring]:
    # The notifier's own adapters on this test's database, run by hand (no dispatcher).
    subject = wire(settings)
    await subject.deliveries.ensure_indexes()
    yield subject
    await subject.close()


async def test_weekly_digest_held_until_its_time_then_one_email_once(
    stack: Stack, run_id: str, wiring: Wiring
) -> None:
    notifier, send_due = wiring.cases.notifier, wiring.cases.send_due
    person = f"weekly-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    await notifier.on_response(
        focal_response(1, person, interests=["climate-resilience", "housing"])
    )
    assert await send_due()  # the confirmation email
    [(message_id, token)] = await eventually(
        lambda: confirmation_tokens(mailbox, person), lambda found: len(found) == 1
    )
    state, _ = await notifier.confirm(notifier.settings.link_keys().verify(token, CONFIRM))
    assert state == "done"
    await mailbox.delete([message_id])
    weekly = consent.Choices(("climate-resilience", "housing"), "en", consent.WEEKLY)
    await notifier.registry.set_preferences(notifier.registry.key(person), weekly)
    flood = pilot(f"flood-{run_id}", title=f"Flood {run_id}")
    homes = pilot(f"homes-{run_id}", title=f"Homes {run_id}", themes=["housing"], sdgs=[])
    assert await notifier.on_pilot(flood) == 1
    assert await notifier.on_pilot(homes) == 1

    # Each is due at once, claimed, and put back until the digest's time.
    assert await send_due() and await send_due()
    held = [
        *(await notifier.deliveries.for_pilot(flood.pilot_id)),
        *(await notifier.deliveries.for_pilot(homes.pilot_id)),
    ]
    nothing_due = await send_due()
    before_time = await mailbox.messages_to(person)

    # The week passes: the records are moved back by one, as if created then.
    client = mongo.new_client(stack.mongodb_url)
    try:
        for delivery in held:
            await client[f"test_{run_id}"][DELIVERIES].update_one(
                {"_id": delivery.key},
                {
                    "$set": {
                        "created_at": delivery.created_at - timedelta(days=7),
                        "next_attempt_at": datetime.now(UTC) - timedelta(seconds=1),
                    }
                },
            )
    finally:
        await client.close()
    assert await send_due()
    again = await send_due()
    sent = [
        *(await notifier.deliveries.for_pilot(flood.pilot_id)),
        *(await notifier.deliveries.for_pilot(homes.pilot_id)),
    ]
    inbox = await eventually(lambda: mailbox.messages_to(person), lambda m: len(m) >= 1)

    settings = notifier.settings
    for delivery in held:
        due = consent.next_digest_at(
            delivery.created_at, settings.digest_weekday, settings.digest_hour
        )
        assert (delivery.state, delivery.next_attempt_at) == ("pending", due)
        assert due.weekday() == settings.digest_weekday and due > datetime.now(UTC)
    assert nothing_due is False
    assert before_time == []
    assert again is False
    assert [d.state for d in sent] == ["sent", "sent"]
    assert sent[0].message_id == sent[1].message_id
    assert len(inbox) == 1
    assert inbox[0]["Subject"] == "2 new pilots for your city"
    body = message_from_bytes(await mailbox.raw(inbox[0]["ID"]), policy=policy.default)
    text = body.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"Flood {run_id}" in text and f"Homes {run_id}" in text
    assert "/v1/preferences?token=" in text


async def test_preferences_form_unsubscribes_and_refuses_bad_input(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    person = f"form-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(focal_response(1, person, interests=["climate-resilience"])),
    )
    app = create_app(settings)
    registry: Registry = app.state.notifier.registry
    async with serving(app) as client:
        await confirm_focal_points(client, mailbox, person)
        await produce(stack.kafka, settings.topic_pilots, records(pilot(f"p-{run_id}")))
        [email] = await eventually(lambda: mailbox.messages_to(person), lambda m: len(m) == 1)
        sent = message_from_bytes(await mailbox.raw(email["ID"]), policy=policy.default)
        text = sent.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        link = next(word for word in text.split() if "/v1/preferences?token=" in word)
        token = parse_qs(urlparse(link).query)["token"][0]
        unsubscribe_token = parse_qs(urlparse(str(sent["List-Unsubscribe"]).strip("<>")).query)[
            "token"
        ][0]
        form = {"Content-Type": "application/x-www-form-urlencoded"}

        unknown_theme = await client.post(
            "/v1/preferences", content=f"token={token}&themes=nope", headers=form
        )
        bad_language = await client.post(
            "/v1/preferences", content=f"token={token}&language=de", headers=form
        )
        no_token = await client.post("/v1/preferences", content="themes=housing", headers=form)
        other_kind = await client.post(
            "/v1/preferences", content=f"token={unsubscribe_token}&themes=housing", headers=form
        )
        wrong_page = await client.get("/v1/unsubscribe", params={"token": token})
        unchanged = await registry.get(registry.key(person))
        left = await client.post(
            "/v1/preferences", content=f"token={token}&action=unsubscribe", headers=form
        )
        after = await registry.get(registry.key(person))

    assert unknown_theme.status_code == 422
    assert unknown_theme.headers["content-type"] == "application/problem+json"
    assert "themes" in unknown_theme.json()["detail"]
    assert bad_language.status_code == 422 and "language" in bad_language.json()["detail"]
    assert no_token.status_code == 400 and "token" in no_token.json()["detail"]
    assert other_kind.status_code == 400  # an unsubscribe link opens no preference page
    assert wrong_page.status_code == 400  # nor the other way round
    assert unchanged is not None and unchanged.preferences is None
    assert left.status_code == 200
    assert after is not None and after.unsubscribed is True
    assert "You are unsubscribed" in left.text
