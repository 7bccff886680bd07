"""The notifier against the real broker, MongoDB-wire server and SMTP server."""

from __future__ import annotations

from email import message_from_bytes, policy
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from pydantic import SecretStr

from services.notifier import unsubscribe
from services.notifier.app import create_app
from services.notifier.mailer import Mailer
from services.notifier.settings import NotifierSettings
from tests.integration.notifier_support import focal_response, notifier_settings, pilot, records
from tests.support import (
    OPERATOR,
    OPERATOR_TOKEN,
    Mailbox,
    Stack,
    confirm_focal_points,
    eventually,
    produce,
    serving,
)

pytestmark = pytest.mark.integration
SIGNING_KEY = "test-unsubscribe-key-0123456789abcdef"
ROTATED_KEY = "rotated-unsubscribe-key-0123456789abcdef"


async def deliveries(client: httpx.AsyncClient, pilot_id: str) -> dict[str, object]:
    """The operators' delivery report of one pilot."""
    answer = await client.get("/v1/deliveries", params={"pilot_id": pilot_id}, headers=OPERATOR)
    return dict(answer.json())


@pytest.fixture
def settings(stack: Stack, run_id: str) -> NotifierSettings:
    return notifier_settings(
        stack,
        run_id,
        operator_token=OPERATOR_TOKEN,
        unsubscribe_secret=SIGNING_KEY,
        public_base_url="https://notify.example.org",
    )


async def test_pilot_emails_each_matching_focal_point_once(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    matching = f"match-{run_id}@example.org"
    french = f"fr-{run_id}@example.org"
    other_theme = f"other-{run_id}@example.org"
    other_country = f"abroad-{run_id}@example.org"
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(
            focal_response(1, matching, interests=["climate-resilience"]),
            focal_response(2, french, interests=["disaster-risk-reduction"], language="fr"),
            focal_response(3, other_theme, interests=["housing"]),
            focal_response(4, other_country, interests=["climate-resilience"], country="KE"),
        ),
    )
    announced = pilot(f"pilot-{run_id}")
    mailbox = Mailbox(stack.mail_api)
    async with serving(create_app(settings)) as client:
        # Each person confirms their address first (double opt-in).
        await confirm_focal_points(client, mailbox, matching, french, other_theme, other_country)
        # The pilot arrives twice (a redelivery).
        await produce(stack.kafka, settings.topic_pilots, records(announced, announced))
        done = await eventually(
            lambda: deliveries(client, announced.pilot_id),
            lambda d: d["counts"] == {"sent": 2},
            within=60,
        )
        inbox = await eventually(lambda: mailbox.messages_to(matching), lambda m: len(m) >= 1)
        metrics = (await client.get("/metrics")).text

    sent_counter = next(
        line for line in metrics.splitlines() if line.startswith('emails_total{status="sent"}')
    )
    assert float(sent_counter.split()[-1]) >= 2  # process-wide: other tests may add to it

    keys = settings.email_keys()
    expected = sorted([keys.key(matching), keys.key(french)])
    assert sorted(d["focal_point"] for d in done["deliveries"]) == expected
    assert len(inbox) == 1
    assert len(await mailbox.messages_to(french)) == 1
    assert await mailbox.messages_to(other_theme) == []
    assert await mailbox.messages_to(other_country) == []

    sent = message_from_bytes(await mailbox.raw(inbox[0]["ID"]), policy=policy.default)
    assert sent["Subject"] == f"New pilot for your city: {announced.title}"
    assert sent["Content-Language"] == "en"
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = sent["List-Unsubscribe"].strip("<>")
    assert unsubscribe_url.startswith("https://notify.example.org/v1/unsubscribe?token=")
    parts = {part.get_content_type(): part.get_content() for part in sent.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    assert "Climate adaptation and resilience" in parts["text/plain"]
    assert "Nguyễn Văn An" in parts["text/html"]


async def test_unsubscribe_one_click_stops_later_pilots(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    leaving = f"leaving-{run_id}@example.org"
    staying = f"staying-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    await register_interested(stack, settings, leaving, staying)
    async with serving(create_app(settings)) as client:
        await confirm_focal_points(client, mailbox, leaving, staying)
        await produce(stack.kafka, settings.topic_pilots, records(pilot(f"first-{run_id}")))
        inbox = await eventually(lambda: mailbox.messages_to(leaving), lambda m: len(m) == 1)
        token = unsubscribe_token(await mailbox.raw(inbox[0]["ID"]))

        forged = await client.post("/v1/unsubscribe", params={"token": token[:-2] + "xx"})
        page = await client.get("/v1/unsubscribe", params={"token": token})
        clicked = await client.post("/v1/unsubscribe", params={"token": token})

        await produce(stack.kafka, settings.topic_pilots, records(pilot(f"second-{run_id}")))
        # The second pilot has been handled once the one who stayed has both emails.
        await eventually(lambda: mailbox.messages_to(staying), lambda m: len(m) == 2)

    assert forged.status_code == 400
    assert page.status_code == 200
    assert "<form" in page.text
    assert clicked.status_code == 200
    assert len(await mailbox.messages_to(leaving)) == 1


async def test_mailer_reuses_connection_for_many_messages(stack: Stack, run_id: str) -> None:
    from email.message import EmailMessage

    mailer = Mailer(stack.smtp_host, stack.smtp_port)
    addresses = [f"batch-{run_id}-{n}@example.org" for n in range(5)]
    try:
        for address in addresses:
            message = EmailMessage()
            message["From"] = "pilots@example.org"
            message["To"] = address
            message["Subject"] = "batch"
            message.set_content("hello")
            await mailer.send(message)
    finally:
        await mailer.close()
    mailbox = Mailbox(stack.mail_api)
    for address in addresses:
        assert len(await mailbox.messages_to(address)) == 1


async def test_pilot_emails_over_several_connections_each_focal_point_once(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    pooled = settings.model_copy(update={"smtp_connections": 3, "send_rate_per_second": 0})
    people = [f"pooled-{n}-{run_id}@example.org" for n in range(8)]
    await produce(
        stack.kafka,
        pooled.topic_responses,
        records(
            *(
                focal_response(n, address, interests=["climate-resilience"])
                for n, address in enumerate(people)
            )
        ),
    )
    announced = pilot(f"pilot-{run_id}")
    mailbox = Mailbox(stack.mail_api)
    async with serving(create_app(pooled)) as client:
        await confirm_focal_points(client, mailbox, *people)
        await produce(stack.kafka, pooled.topic_pilots, records(announced, announced))
        await eventually(
            lambda: deliveries(client, announced.pilot_id),
            lambda d: d["counts"] == {"sent": 8},
            within=60,
        )

    for address in people:
        pilots = [m for m in await mailbox.messages_to(address) if announced.title in m["Subject"]]
        assert len(pilots) == 1, address


async def test_unsubscribe_after_secret_rotation_old_links_still_work(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    leaving = f"rotated-{run_id}@example.org"
    staying = f"kept-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    await register_interested(stack, settings, leaving, staying)
    async with serving(create_app(settings)) as client:
        await confirm_focal_points(client, mailbox, leaving, staying)
        await produce(stack.kafka, settings.topic_pilots, records(pilot(f"before-{run_id}")))
        inbox = await eventually(lambda: mailbox.messages_to(leaving), lambda m: len(m) == 1)
    old_link = unsubscribe_token(await mailbox.raw(inbox[0]["ID"]))

    retired = settings.model_copy(update={"unsubscribe_secret": SecretStr(ROTATED_KEY)})
    rotated = settings.model_copy(
        update={"unsubscribe_secret": SecretStr(f"{ROTATED_KEY} {SIGNING_KEY}")}
    )
    async with serving(create_app(retired)) as client:
        refused = await client.post("/v1/unsubscribe", params={"token": old_link})
    async with serving(create_app(rotated)) as client:
        clicked = await client.post("/v1/unsubscribe", params={"token": old_link})
        await produce(stack.kafka, settings.topic_pilots, records(pilot(f"after-{run_id}")))
        # The second pilot has been handled once the one who stayed has both emails.
        kept = await eventually(lambda: mailbox.messages_to(staying), lambda m: len(m) == 2)

    assert refused.status_code == 400
    assert clicked.status_code == 200
    assert len(await mailbox.messages_to(leaving)) == 1
    # New links are signed with the first secret: of the two emails, only the second one's.
    tokens = [unsubscribe_token(await mailbox.raw(message["ID"])) for message in kept]
    assert sorted(signed_with(token, ROTATED_KEY) for token in tokens) == [False, True]


def unsubscribe_token(raw: bytes) -> str:
    """The token of the `List-Unsubscribe` link of a raw email."""
    sent = message_from_bytes(raw, policy=policy.default)
    return parse_qs(urlparse(sent["List-Unsubscribe"].strip("<>")).query)["token"][0]


def signed_with(token: str, secret: str) -> bool:
    try:
        unsubscribe.verify(token, [secret])
    except unsubscribe.InvalidToken:
        return False
    return True


async def register_interested(stack: Stack, settings: NotifierSettings, *emails: str) -> None:
    """Consenting focal points interested in climate resilience, one per address."""
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(
            *(
                focal_response(n, email, interests=["climate-resilience"])
                for n, email in enumerate(emails, start=1)
            )
        ),
    )
