"""Double opt-in on the real broker, MongoDB-wire server and SMTP server: a confirmation email
first, pilot emails only once the person confirmed (pilots announced meanwhile included), one
confirmation per request, expiry, and no form response that subscribes an unsubscribed person."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from services.notifier.app import create_app
from services.notifier.records import FocalPoint
from services.notifier.registry import Registry
from services.notifier.settings import NotifierSettings
from services.notifier.wiring import wire
from shared.kafka import consumer_lag
from tests.integration.notifier_support import focal_response, notifier_settings, pilot, records
from tests.support import (
    OPERATOR,
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
    return notifier_settings(
        stack, run_id, operator_token=OPERATOR_TOKEN, public_base_url="https://notify.example.org"
    )


async def drained(stack: Stack, settings: NotifierSettings) -> None:
    """Both subscribers have handled every record produced so far."""
    for suffix, topic in (
        ("registry", settings.topic_responses),
        ("pilots", settings.topic_pilots),
    ):
        group = f"{settings.notifier_group_id}.{suffix}"
        await eventually(lambda g=group, t=topic: consumer_lag(stack.kafka, g, t), lambda n: n == 0)


async def pilot_states(client: httpx.AsyncClient, pilot_id: str) -> dict[str, int]:
    answer = await client.get("/v1/deliveries", params={"pilot_id": pilot_id}, headers=OPERATOR)
    return dict(answer.json()["counts"])


async def test_confirm_pilot_announced_before_confirming_sent_after(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    person = f"optin-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    early = pilot(f"early-{run_id}", title=f"Early {run_id}")
    closed = pilot(f"closed-{run_id}", title=f"Closed {run_id}", apply_by="2020-01-31")
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(focal_response(1, person, interests=["climate-resilience"], language="fr")),
    )
    app = create_app(settings)
    registry: Registry = app.state.notifier.registry
    async with serving(app) as client:
        [(_, token)] = await eventually(
            lambda: confirmation_tokens(mailbox, person), lambda found: len(found) == 1
        )
        # Pilots announced before the person confirmed: none is sent yet.
        await produce(stack.kafka, settings.topic_pilots, records(early, closed))
        await drained(stack, settings)
        before = await pilot_states(client, early.pilot_id)
        unconfirmed = await registry.get(registry.key(person))

        page = await client.get("/v1/confirm", params={"token": token})
        after_get = await registry.get(registry.key(person))
        wrong_purpose = await client.post("/v1/unsubscribe", params={"token": token})
        forged = await client.post("/v1/confirm", params={"token": token[:-2] + "xx"})
        confirmed = await client.post("/v1/confirm", params={"token": token})
        again = await client.post("/v1/confirm", params={"token": token})
        await eventually(
            lambda: pilot_states(client, early.pilot_id), lambda c: c == {"sent": 1}, within=60
        )
        inbox = await eventually(lambda: mailbox.messages_to(person), lambda m: len(m) == 2)
        closed_deliveries = await pilot_states(client, closed.pilot_id)

    assert before == {}
    assert unconfirmed is not None and unconfirmed.confirmed_at is None
    assert page.status_code == 200
    assert '<form method="post"' in page.text and 'lang="fr"' in page.text
    assert after_get is not None and after_get.confirmed_at is None  # a GET confirms nothing
    assert wrong_purpose.status_code == 400
    assert forged.status_code == 400
    assert confirmed.status_code == 200 and "confirmée" in confirmed.text
    assert again.status_code == 200
    assert closed_deliveries == {}
    subjects = sorted(m["Subject"] for m in inbox)
    assert subjects == sorted(
        [
            "Veuillez confirmer votre adresse pour les messages sur les projets pilotes du "
            "Cities Project",
            f"Nouveau projet pilote pour votre ville : Early {run_id}",
        ]
    ), subjects
    confirmation = next(m for m in inbox if m["Subject"].startswith("Veuillez"))
    sent = message_from_bytes(await mailbox.raw(confirmation["ID"]), policy=policy.default)
    text = sent.get_body(("plain",)).get_content()
    assert "https://notify.example.org/v1/confirm?token=" in text
    assert "https://notify.example.org/v1/preferences?token=" in text
    assert person not in text.split("\n", 1)[1]  # no address in any link
    assert sent["Content-Language"] == "fr"


async def test_confirmation_once_per_request_whatever_the_form_says(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    person = f"spam-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    first = focal_response(1, person, interests=["climate-resilience"])
    # The same response redelivered, then other responses naming the address (a stranger
    # filling in the form again and again).
    await produce(stack.kafka, settings.topic_responses, records(first, first))
    async with serving(create_app(settings)):
        await eventually(lambda: confirmation_tokens(mailbox, person), lambda f: len(f) == 1)
        more = [focal_response(n, person, interests=["housing"]) for n in range(2, 6)]
        await produce(stack.kafka, settings.topic_responses, records(*more))
        await drained(stack, settings)
        await asyncio.sleep(1)  # the dispatcher polls every 0.1 s: a second email would be in

    assert len(await mailbox.messages_to(person)) == 1


async def test_register_form_response_cannot_resubscribe_unsubscribed(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    person = f"sticky-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    # Re-sending at once: the form response below gets its confirmation email, so the test
    # shows that the form alone still subscribes nobody and the person's own click does.
    settings = settings.model_copy(update={"confirmation_resend_seconds": 0})
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(focal_response(1, person, interests=["climate-resilience"])),
    )
    app = create_app(settings)
    registry: Registry = app.state.notifier.registry
    first, second = pilot(f"first-{run_id}"), pilot(f"second-{run_id}")
    async with serving(app) as client:
        await confirm_focal_points(client, mailbox, person)
        await produce(stack.kafka, settings.topic_pilots, records(first))
        [email] = await eventually(lambda: mailbox.messages_to(person), lambda m: len(m) == 1)
        unsubscribe_link = str(
            message_from_bytes(await mailbox.raw(email["ID"]), policy=policy.default)[
                "List-Unsubscribe"
            ]
        ).strip("<>")
        token = parse_qs(urlparse(unsubscribe_link).query)["token"][0]
        assert (await client.post("/v1/unsubscribe", params={"token": token})).status_code == 200

        # A later form response with consent: the registry takes it, the unsubscribe stays.
        # Submitted after the unsubscribe (a response older than it changes nothing at all), and
        # received in a later second than the first request (events keep `received_at` to the
        # second, and one received in the request's second counts as received before it).
        await asyncio.sleep(1.0)
        now = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        again = focal_response(
            2, person, interests=["climate-resilience", "housing"], submitted_at=now
        )
        await produce(stack.kafka, settings.topic_responses, records(again))
        await produce(stack.kafka, settings.topic_pilots, records(second))
        await drained(stack, settings)
        after_form = await registry.get(registry.key(person))
        held = await pilot_states(client, second.pilot_id)
        # The form response asked the person (a new confirmation email); only their click lifts
        # the unsubscribe, and the open pilot announced meanwhile then reaches them.
        try:
            await confirm_focal_points(client, mailbox, person)
        except AssertionError as missing:
            # What the notifier did about it, for whoever reads a failure.
            deliveries = await app.state.notifier.deliveries.of_focal_point(registry.key(person))
            raise AssertionError(
                f"{missing}; record after the form: {after_form}; now: "
                f"{await registry.get(registry.key(person))}; deliveries: {deliveries}"
            ) from missing
        await eventually(
            lambda: pilot_states(client, second.pilot_id), lambda c: c == {"sent": 1}, within=60
        )
        inbox = await eventually(lambda: mailbox.messages_to(person), lambda m: len(m) == 2)

    assert after_form is not None
    assert after_form.response_id == again.response_id
    assert after_form.unsubscribed is True
    assert held == {}
    assert {m["Subject"] for m in inbox} == {f"New pilot for your city: {first.title}"}


async def test_expire_unconfirmed_no_pilots_details_dropped(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    person = f"expired-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    short = settings.model_copy(
        update={"confirmation_ttl_seconds": 3.0, "confirmation_resend_seconds": 0}
    )
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(focal_response(1, person, interests=["climate-resilience"])),
    )
    app = create_app(short)
    registry: Registry = app.state.notifier.registry
    announced = pilot(f"pilot-{run_id}")
    async with serving(app) as client:
        [(_, token)] = await eventually(
            lambda: confirmation_tokens(mailbox, person), lambda found: len(found) == 1
        )
        expired: FocalPoint | None = await eventually(
            lambda: registry.get(registry.key(person)),
            lambda r: r is not None and r.expired,
            within=15,
        )
        late_click = await client.post("/v1/confirm", params={"token": token})
        late_page = await client.get("/v1/confirm", params={"token": token})
        await produce(stack.kafka, settings.topic_pilots, records(announced))
        await drained(stack, settings)
        none_sent = await pilot_states(client, announced.pilot_id)

    # Consent given again later: a new request (open for the default time), and confirming it
    # works.
    async with serving(
        create_app(settings.model_copy(update={"confirmation_resend_seconds": 0}))
    ) as client:
        await produce(
            stack.kafka,
            settings.topic_responses,
            records(
                focal_response(
                    2, person, interests=["climate-resilience"], submitted_at="2024-06-01T08:00:00Z"
                )
            ),
        )
        tokens = await eventually(
            lambda: confirmation_tokens(mailbox, person), lambda found: len(found) == 2
        )
        fresh = next(t for _, t in tokens if t != token)
        in_time = await client.post("/v1/confirm", params={"token": fresh})

    assert expired is not None
    assert (expired.email, expired.name, expired.city) == (None, None, None)
    assert late_click.status_code == 410
    assert late_page.status_code == 410
    assert none_sent == {}
    assert in_time.status_code == 200


async def test_confirmation_two_replicas_same_response_one_email(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    person = f"replicas-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    replicas = [wire(settings) for _ in range(2)]  # each with its own clients
    response = focal_response(1, person, interests=["climate-resilience"])
    try:
        # Both replicas read the same response (a rebalance redelivered it) at once, and both
        # dispatchers look for due deliveries at once.
        created = await asyncio.gather(*(r.cases.notifier.on_response(response) for r in replicas))
        sent = await asyncio.gather(*(r.cases.send_due() for r in replicas))
        after = await asyncio.gather(*(r.cases.send_due() for r in replicas))
        await eventually(lambda: mailbox.messages_to(person), lambda m: len(m) >= 1)
        await asyncio.sleep(0.5)
        inbox = await mailbox.messages_to(person)
    finally:
        for replica in replicas:
            await replica.close()

    assert sorted(created) == [0, 1]
    assert sorted(sent) == [False, True]
    assert after == [False, False]
    assert len(inbox) == 1
