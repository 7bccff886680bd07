"""The focal-point registry on the real MongoDB-wire server; consent through the notifier."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier.app import create_app
from services.notifier.claims import Claims
from services.notifier.deliveries import Deliveries
from services.notifier.mailer import Mailer
from services.notifier.matching import bucket_of
from services.notifier.registry import Registry
from services.notifier.settings import NotifierSettings
from services.notifier.wiring import use_cases
from shared import mongo
from shared.events import SurveyResponse
from shared.kafka import consumer_lag
from tests.integration.notifier_support import notifier_settings, pilot, records
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
T0 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)


def response(
    number: int,
    email: str,
    *,
    at: datetime = T0,
    consent: bool = True,
    interests: tuple[str, ...] = ("climate-resilience",),
    language: str = "en",
    city: str = "Đà Nẵng",
) -> SurveyResponse:
    body: dict[str, Any] = canonical_response(
        f"generic:{number}",
        submitted_at=at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        respondent={"type": "local_government", "country": "VN", "city": city},
        development_priorities=[],
        collaboration_interests=list(interests),
        focal_point={
            "name": "Trần Thị Bình",
            "email": email,
            "language": language,
            "consent": consent,
        },
    )
    return SurveyResponse.model_validate({**body, "source": "generic", "received_at": at})


@pytest.fixture
async def registry(stack: Stack, run_id: str) -> AsyncIterator[Registry]:
    client = mongo.new_client(stack.mongodb_url)
    keys = notifier_settings(stack, run_id).email_keys()
    # These tests are about the registry's order, withdrawals and the match index: addresses
    # count as confirmed here. Double opt-in is tested in test_notifier_consent.py.
    registry = Registry(mongo.database(client, f"test_{run_id}"), keys, require_confirmation=False)
    await registry.ensure_indexes()
    yield registry
    await client.close()


async def test_register_latest_response_wins_email_normalised(registry: Registry) -> None:
    later = response(
        2,
        "Binh.Tran@Example.org",
        at=T0 + timedelta(days=3),
        language="fr",
        city="Huế",
        interests=("housing",),
    )
    earlier = response(1, "binh.tran@example.org", at=T0)

    assert await registry.register(later) is not None
    # Arrives late: changes nothing, and the record as it stands comes back.
    late = await registry.register(earlier)
    assert late is not None and late.response_id == "generic:2"
    record = await registry.get(registry.key(" BINH.TRAN@example.org "))

    assert record is not None
    # Keyed by the keyed hash of the address, whatever its case; the address only in `email`.
    assert record.key == registry.key("binh.tran@example.org") != "binh.tran@example.org"
    assert record.email == "Binh.Tran@example.org"  # as written; the domain lower-cased
    assert (record.survey_language, record.city, record.survey_codes) == ("fr", "Huế", ("housing",))
    assert (record.survey_id, record.response_id) == ("cities-2024-priorities", "generic:2")


async def test_register_unsubscribed_stays_whatever_later_responses_say(
    registry: Registry,
) -> None:
    email = "leaving@example.org"
    await registry.register(response(1, email, at=T0))
    assert await registry.unsubscribe(registry.key(email))

    # A response submitted before the unsubscribe (replayed, or late) changes nothing ...
    replayed = await registry.register(response(2, email, at=T0 + timedelta(days=1)))
    # ... and one submitted after it, with consent (anyone can type an address into a form),
    # updates the record but does not subscribe the person again.
    later = await registry.register(response(3, email, at=datetime.now(UTC) + timedelta(minutes=1)))

    assert replayed is not None and replayed.response_id == "generic:1"
    assert replayed.unsubscribed is True
    assert later is not None and later.response_id == "generic:3"
    assert later.unsubscribed is True and later.consent is True
    found = await registry.candidates(pilot("p", eligible_countries=[]))
    assert registry.key(email) not in {key for key, _ in found}


async def test_register_withdrawal_keeps_no_personal_data(registry: Registry) -> None:
    email = "withdrawn@example.org"
    await registry.register(response(1, email, at=T0))

    withdrawn = await registry.register(
        response(2, email, at=T0 + timedelta(days=1), consent=False)
    )
    older_consent = await registry.register(response(3, email, at=T0 + timedelta(hours=1)))

    assert withdrawn is not None
    assert withdrawn.consent is False
    assert withdrawn.survey_codes == ()
    assert (withdrawn.name, withdrawn.email, withdrawn.city) == (None, None, None)
    # A replayed older consent does not bring the address back.
    assert older_consent is not None and older_consent.consent is False
    stored = await registry.get(registry.key(email))
    assert stored is not None and stored.consent is False


async def test_register_without_focal_point_nothing(registry: Registry) -> None:
    body = canonical_response("generic:9")
    bare = SurveyResponse.model_validate({**body, "source": "generic", "received_at": T0})

    assert await registry.register(bare) is None


async def test_send_due_after_withdrawal_fails_pending_delivery(
    stack: Stack, run_id: str, registry: Registry
) -> None:
    client = mongo.new_client(stack.mongodb_url)
    db = mongo.database(client, f"test_{run_id}")
    deliveries = Deliveries(db, timedelta(seconds=60))
    # Nothing listens on port 9: a send attempt would be a transient failure, not a `failed`.
    # About a withdrawal after a delivery was made: no confirmation step (as the registry).
    settings = notifier_settings(stack, run_id, smtp_port=9, double_opt_in=False)
    cases = use_cases(settings, registry, deliveries, Mailer("127.0.0.1", 9))
    notifier = cases.notifier
    email = f"pending-{run_id}@example.org"
    announced = pilot(f"pilot-{run_id}")
    try:
        await notifier.on_response(response(1, email, at=T0))
        assert await notifier.on_pilot(announced) == 1
        await notifier.on_response(response(2, email, at=T0 + timedelta(days=1), consent=False))
        assert await cases.send_due()
        [delivery] = await deliveries.for_pilot(announced.pilot_id)
    finally:
        await client.close()

    assert delivery.state == "failed"
    assert delivery.last_error is not None and "consent" in delivery.last_error


@pytest.fixture
def settings(stack: Stack, run_id: str) -> NotifierSettings:
    # A second confirmation may follow the first at once: a person who withdrew and consents
    # again confirms again (not rate-limited for a day, as a stranger's form would be).
    return notifier_settings(stack, run_id, confirmation_resend_seconds=0)


async def test_withdrawal_stops_all_mail_until_consent_again(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    leaving = f"withdraw-{run_id}@example.org"
    staying = f"stay-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(response(1, leaving), response(2, staying)),
    )
    app = create_app(settings)
    registry: Registry = app.state.notifier.registry
    async with serving(app) as client:
        await confirm_focal_points(client, mailbox, leaving, staying)
        await produce(stack.kafka, settings.topic_pilots, records(pilot(f"first-{run_id}")))
        await eventually(lambda: mailbox.messages_to(leaving), lambda m: len(m) == 1)

        withdrawal = response(3, leaving, at=T0 + timedelta(days=1), consent=False)
        await produce(stack.kafka, settings.topic_responses, records(withdrawal))
        await eventually(
            lambda: registry.get(registry.key(leaving)),
            lambda r: r is not None and not r.consent,
        )
        await produce(stack.kafka, settings.topic_pilots, records(pilot(f"second-{run_id}")))
        await eventually(lambda: mailbox.messages_to(staying), lambda m: len(m) == 2)
        group = f"{settings.notifier_group_id}.pilots"
        await eventually(
            lambda: consumer_lag(stack.kafka, group, settings.topic_pilots), lambda n: n == 0
        )
        second = await app.state.notifier.deliveries.for_pilot(f"second-{run_id}")
        after_withdrawal = len(await mailbox.messages_to(leaving))

        # Consent given again in a later response: the open second pilot reaches them too.
        again = response(4, leaving, at=T0 + timedelta(days=2))
        # Received now, after the first confirmation request (not a replay of an old response).
        again = again.model_copy(update={"received_at": datetime.now(UTC)})
        await produce(stack.kafka, settings.topic_responses, records(again))
        # A withdrawal ended the confirmation: the person confirms again.
        await confirm_focal_points(client, mailbox, leaving)
        back = await eventually(lambda: mailbox.messages_to(leaving), lambda m: len(m) == 2)

    assert [d.email_key for d in second] == [registry.key(staying)]
    assert after_withdrawal == 1
    assert {m["Subject"] for m in back} == {f"New pilot for your city: {pilot('p').title}"}


async def test_late_registration_gets_open_pilots_only(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    late = f"late-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    open_pilot = pilot(f"open-{run_id}", title=f"Open pilot {run_id}")
    closed = pilot(f"closed-{run_id}", title=f"Closed pilot {run_id}", apply_by="2020-01-31")
    other_theme = pilot(f"housing-{run_id}", title=f"Housing {run_id}", themes=["housing"], sdgs=[])
    app = create_app(settings)
    async with serving(app) as client:
        await produce(stack.kafka, settings.topic_pilots, records(closed, other_theme, open_pilot))
        # The pilots are known once the notifier has read them (nobody to tell yet).
        await eventually(
            lambda: app.state.notifier.registry.pilot(open_pilot.pilot_id),
            lambda p: p is not None,
        )
        await eventually(
            lambda: app.state.notifier.registry.pilot(other_theme.pilot_id),
            lambda p: p is not None,
        )
        await produce(stack.kafka, settings.topic_responses, records(response(1, late)))
        await confirm_focal_points(client, mailbox, late)
        inbox = await eventually(lambda: mailbox.messages_to(late), lambda m: len(m) == 1)
        # The registration made every delivery it was going to make before it was acknowledged.
        not_for_them = [
            await app.state.notifier.deliveries.for_pilot(p.pilot_id) for p in (closed, other_theme)
        ]

    assert inbox[0]["Subject"] == f"New pilot for your city: Open pilot {run_id}"
    assert not_for_them == [[], []]


async def test_candidates_concurrent_registrations_same_bucket_none_lost(
    stack: Stack, registry: Registry, run_id: str
) -> None:
    # Addresses are drawn until twelve share a bucket: a fixed sample holds fewer now and then
    # (about 20 of 5,000 fall in each of the 256 buckets).
    same_bucket = list(
        itertools.islice(
            (
                email
                for n in itertools.count()
                if bucket_of(registry.key(email := f"crowd-{n}-{run_id}@example.org")) == 7
            ),
            12,
        )
    )
    other_client = mongo.new_client(stack.mongodb_url)
    # A second registry on its own connection stands for another replica writing at once.
    keys = notifier_settings(stack, run_id).email_keys()
    replicas = [
        registry,
        Registry(mongo.database(other_client, f"test_{run_id}"), keys, require_confirmation=False),
    ]
    try:
        await asyncio.gather(
            *(replicas[n % 2].register(response(n, email)) for n, email in enumerate(same_bucket))
        )
    finally:
        await other_client.close()
    found = await registry.candidates(pilot("p", eligible_countries=[]))

    assert len(same_bucket) == 12
    assert sorted(key for key, _ in found) == sorted(registry.key(e) for e in same_bucket)
    assert {tuple(codes) for _, codes in found} == {("climate-resilience",)}


async def test_candidates_follow_unsubscribe_withdrawal_and_interests(registry: Registry) -> None:
    await registry.register(response(1, "stays@example.org"))
    await registry.register(response(2, "leaves@example.org"))
    await registry.register(response(3, "withdraws@example.org"))
    await registry.register(response(4, "changes@example.org"))

    await registry.unsubscribe(registry.key("leaves@example.org"))
    await registry.register(
        response(5, "withdraws@example.org", at=T0 + timedelta(1), consent=False)
    )
    await registry.register(
        response(6, "changes@example.org", at=T0 + timedelta(1), interests=("housing",))
    )
    # Replays of the first responses change nothing.
    for number, email in enumerate(
        ["leaves@example.org", "withdraws@example.org", "changes@example.org"]
    ):
        await registry.register(response(number + 2, email))
    found = await registry.candidates(pilot("p", eligible_countries=[]))

    assert found == [(registry.key("stays@example.org"), ["climate-resilience"])]


async def test_claim_due_two_replicas_each_delivery_once(stack: Stack, run_id: str) -> None:
    clients = [mongo.new_client(stack.mongodb_url) for _ in range(2)]
    replicas = [
        Deliveries(mongo.database(client, f"test_{run_id}"), timedelta(seconds=60))
        for client in clients
    ]
    try:
        for n in range(30):
            await replicas[0].create("p", f"person-{n}@example.org", ["housing"])

        async def drain(deliveries: Deliveries) -> list[str]:
            taken = []
            while (delivery := await deliveries.claim_due()) is not None:
                taken.append(delivery.key)
            return taken

        first, second = await asyncio.gather(*(drain(d) for d in replicas))
        records = await replicas[0].for_pilot("p")
    finally:
        for client in clients:
            await client.close()

    assert sorted(first + second) == sorted(f"p|person-{n}@example.org" for n in range(30))
    assert {(r.state, r.attempts) for r in records} == {("sending", 1)}


async def test_claim_due_abandoned_claim_passed_over_after_lease(stack: Stack, run_id: str) -> None:
    client = mongo.new_client(stack.mongodb_url)
    deliveries = Deliveries(mongo.database(client, f"test_{run_id}"), timedelta(seconds=1))
    claims = Claims(mongo.database(client, f"test_{run_id}"))
    try:
        await deliveries.create("p", "stuck@example.org", ["housing"])
        # A replica took attempt 1 and died before it marked the record.
        await claims.take("p|stuck@example.org#1", datetime.now(UTC) - timedelta(seconds=5))
        skipped = await deliveries.claim_due()
        taken = await deliveries.claim_due()
    finally:
        await client.close()

    assert skipped is None
    assert taken is not None and taken.attempts == 2
