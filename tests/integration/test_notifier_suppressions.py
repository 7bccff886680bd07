"""The suppression list against real servers (Kafka, the MongoDB-wire server, an SMTP server):
a recipient the SMTP server refuses for good, and SES (through signed SNS messages) and
Postmark complaints and bounces, each suppress the address; the next pilot emails everyone else
and not it, and the deliveries API, the suppression list and /metrics say so. Soft bounces are
counted exactly when reports arrive at once and again.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from services.notifier.suppressions import (
    PROVIDER_REPORTS,
    REPORT_LEASE,
    SOFT_BOUNCES,
    Event,
    Report,
    ReportInProgress,
    Suppressions,
    report_key,
)
from shared import mongo
from tests.integration.notifier_support import (
    addresses,
    focal_response,
    notifier_settings,
    pilot,
    records,
)
from tests.integration.smtp_support import (
    Scripted,
    ScriptedController,
    removed_afterwards,
    scripted_server,
)
from tests.sns_signing import (
    TOPIC_ARN,
    Signer,
    postmark_bounce,
    postmark_spam_complaint,
    ses_bounce,
    ses_complaint,
)
from tests.support import OPERATOR, OPERATOR_TOKEN, Stack, eventually, metric, produce, serving

pytestmark = pytest.mark.integration
POSTMARK_SECRET = "pm-hook-9fK2xq7LwZ3mB8vN1cR5tY0uE4iO6pAs"


def basic(password: str) -> dict[str, str]:
    token = base64.b64encode(f"postmark:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


@pytest.fixture
def handler() -> Scripted:
    return Scripted()


@pytest.fixture
def server(handler: Scripted) -> Iterator[ScriptedController]:
    with scripted_server(handler, login=False) as controller:
        yield controller


@pytest.fixture
def settings(stack: Stack, run_id: str, server: ScriptedController) -> NotifierSettings:
    return notifier_settings(
        stack,
        run_id,
        smtp_host=server.hostname,
        smtp_port=server.port,
        operator_token=OPERATOR_TOKEN,
        send_rate_per_second=0,
        ses_topic_arns=TOPIC_ARN,
        postmark_webhook_secret=POSTMARK_SECRET,
        soft_bounce_limit=3,
        # About the suppression list, with a scripted SMTP server that keeps no mailbox to
        # confirm from: addresses count as confirmed (double opt-in: test_notifier_consent.py).
        double_opt_in=False,
    )


@pytest.fixture
async def isolated(stack: Stack, run_id: str) -> AsyncIterator[None]:
    async with removed_afterwards(stack, run_id):
        yield


def app_with(settings: NotifierSettings, signer: Signer) -> FastAPI:
    """The notifier, its SNS certificates served by `signer` (AWS is out of reach)."""
    app = create_app(settings)
    app.state.sns_certificates.fetch = signer.fetch
    return app


async def register(stack: Stack, settings: NotifierSettings, emails: list[str]) -> None:
    responses = (
        focal_response(n, email, interests=["climate-resilience"]) for n, email in enumerate(emails)
    )
    await produce(stack.kafka, settings.topic_responses, records(*responses))


async def deliveries(client: httpx.AsyncClient, pilot_id: str) -> dict[str, Any]:
    answer = await client.get("/v1/deliveries", params={"pilot_id": pilot_id}, headers=OPERATOR)
    return dict(answer.json())


async def suppressions(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/v1/suppressions", headers=OPERATOR)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def announce(
    stack: Stack,
    settings: NotifierSettings,
    client: httpx.AsyncClient,
    pilot_id: str,
    counts: dict[str, int],
) -> dict[str, Any]:
    await produce(stack.kafka, settings.topic_pilots, records(pilot(pilot_id)))
    return await eventually(
        lambda: deliveries(client, pilot_id), lambda d: d["counts"] == counts, within=60
    )


async def test_refused_recipient_suppressed_next_pilot_skips_it(
    stack: Stack, settings: NotifierSettings, run_id: str, handler: Scripted, isolated: None
) -> None:
    kept, gone, policy = addresses(run_id, "refusal", 3)
    k = settings.email_keys().key  # records name people by the keyed hash
    handler.script.rcpt[gone] = "550 5.1.1 <mailbox> No such mailbox here"
    handler.script.rcpt[policy] = "550 5.7.1 Relaying denied by policy"
    await register(stack, settings, [kept, gone, policy])

    async with serving(app_with(settings, Signer())) as client:
        before = (await client.get("/metrics")).text
        first = await announce(stack, settings, client, f"first-{run_id}", {"sent": 1, "failed": 2})
        listed = await suppressions(client)
        # The server would take every message now: only the list keeps `gone` from its email.
        handler.script.fix()
        second = await announce(
            stack, settings, client, f"second-{run_id}", {"sent": 2, "suppressed": 1}
        )
        after = (await client.get("/metrics")).text

    assert {d["focal_point"]: d["state"] for d in first["deliveries"]}[k(gone)] == "failed"
    [entry] = listed["suppressions"]
    assert (entry["focal_point"], entry["reason"], entry["source"]) == (k(gone), "refused", "smtp")
    assert entry["detail"] == "550 5.1.1"
    assert listed["counts"] == {"refused": 1}
    by_address = {d["focal_point"]: d for d in second["deliveries"]}
    assert by_address[k(gone)]["state"] == "suppressed"
    assert by_address[k(gone)]["attempts"] == 0
    assert handler.count() == Counter({kept: 2, policy: 1})
    refused = metric(after, "notifier_suppressions_total", reason="refused", source="smtp")
    assert (
        refused
        == metric(before, "notifier_suppressions_total", reason="refused", source="smtp") + 1
    )
    settled = metric(after, "emails_total", status="suppressed")
    assert settled >= metric(before, "emails_total", status="suppressed") + 1


async def test_ses_complaint_suppressed_next_pilot_skips_it(
    stack: Stack, settings: NotifierSettings, run_id: str, handler: Scripted, isolated: None
) -> None:
    kept, complaining, bounced = addresses(run_id, "ses", 3)
    k = settings.email_keys().key  # records name people by the keyed hash
    await register(stack, settings, [kept, complaining, bounced])
    signer = Signer()

    async with serving(app_with(settings, signer)) as client:
        await announce(stack, settings, client, f"first-{run_id}", {"sent": 3})
        before = (await client.get("/metrics")).text
        complaint = signer.notification(
            ses_complaint(f"complaint-{run_id}", complaining.upper()), message_id="m-1", version="2"
        )
        bounce = signer.notification(ses_bounce(f"bounce-{run_id}", bounced), message_id="m-2")
        answers = [
            await client.post(
                "/v1/provider-reports/ses",
                json=body,
                headers={"x-amz-sns-message-type": "Notification"},
            )
            for body in (complaint, bounce, complaint)
        ]
        second = await announce(
            stack, settings, client, f"second-{run_id}", {"sent": 1, "suppressed": 2}
        )
        listed = await suppressions(client)
        after = (await client.get("/metrics")).text

    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert [a.json()["status"] for a in answers] == ["recorded", "recorded", "duplicate"]
    by_address = {d["focal_point"]: d["state"] for d in second["deliveries"]}
    assert by_address == {k(kept): "sent", k(complaining): "suppressed", k(bounced): "suppressed"}
    reasons = {
        e["focal_point"]: (e["reason"], e["source"], e["report_id"]) for e in listed["suppressions"]
    }
    assert reasons == {
        k(complaining): ("complaint", "ses", f"complaint-{run_id}"),
        k(bounced): ("bounce", "ses", f"bounce-{run_id}"),
    }
    assert handler.count() == Counter({kept: 2, complaining: 1, bounced: 1})
    for reason in ("complaint", "bounce"):
        assert metric(after, "notifier_suppressed_addresses", reason=reason) == 1
        grew = metric(after, "notifier_suppressions_total", reason=reason, source="ses")
        assert (
            grew == metric(before, "notifier_suppressions_total", reason=reason, source="ses") + 1
        )


async def test_postmark_complaint_suppressed_next_pilot_skips_it(
    stack: Stack, settings: NotifierSettings, run_id: str, handler: Scripted, isolated: None
) -> None:
    kept, complaining, bounced = addresses(run_id, "postmark", 3)
    k = settings.email_keys().key  # records name people by the keyed hash
    await register(stack, settings, [kept, complaining, bounced])

    async with serving(app_with(settings, Signer())) as client:
        await announce(stack, settings, client, f"first-{run_id}", {"sent": 3})
        post = "/v1/provider-reports/postmark"
        refused = await client.post(
            post, json=postmark_spam_complaint(1, complaining), headers=basic("wrong-password")
        )
        answers = [
            await client.post(
                post,
                json=postmark_spam_complaint(7001, complaining),
                headers=basic(POSTMARK_SECRET),
            ),
            await client.post(
                post, json=postmark_bounce(7002, bounced), headers=basic(POSTMARK_SECRET)
            ),
            await client.post(
                post, json=postmark_bounce(7002, bounced), headers=basic(POSTMARK_SECRET)
            ),
        ]
        second = await announce(
            stack, settings, client, f"second-{run_id}", {"sent": 1, "suppressed": 2}
        )
        listed = await suppressions(client)
        after = (await client.get("/metrics")).text

    assert refused.status_code == 401
    assert [a.json()["status"] for a in answers] == ["recorded", "recorded", "duplicate"]
    by_address = {d["focal_point"]: d["state"] for d in second["deliveries"]}
    assert by_address == {k(kept): "sent", k(complaining): "suppressed", k(bounced): "suppressed"}
    reasons = {e["focal_point"]: (e["reason"], e["report_id"]) for e in listed["suppressions"]}
    assert reasons == {k(complaining): ("complaint", "7001"), k(bounced): ("bounce", "7002")}
    assert handler.count() == Counter({kept: 2, complaining: 1, bounced: 1})
    assert metric(after, "notifier_suppressions_total", reason="complaint", source="postmark") >= 1


async def test_report_for_unknown_address_suppresses_later_registration(
    stack: Stack, settings: NotifierSettings, run_id: str, handler: Scripted, isolated: None
) -> None:
    kept, early = addresses(run_id, "early", 2)
    k = settings.email_keys().key  # records name people by the keyed hash

    async with serving(app_with(settings, Signer())) as client:
        answer = await client.post(
            "/v1/provider-reports/postmark",
            json=postmark_bounce(8001, early),
            headers=basic(POSTMARK_SECRET),
        )
        await register(stack, settings, [kept, early])
        second = await announce(
            stack, settings, client, f"pilot-{run_id}", {"sent": 1, "suppressed": 1}
        )

    assert answer.status_code == 200 and answer.json()["suppressed"] == 1
    assert {d["focal_point"]: d["state"] for d in second["deliveries"]}[k(early)] == "suppressed"
    assert handler.count() == Counter({kept: 1})


async def test_soft_bounces_at_once_and_again_counted_exactly(
    stack: Stack, settings: NotifierSettings, run_id: str, isolated: None
) -> None:
    soft, other = addresses(run_id, "soft", 2)
    k = settings.email_keys().key  # records name people by the keyed hash
    post = "/v1/provider-reports/postmark"
    signer = Signer()

    async with serving(app_with(settings, signer)) as client:

        async def report(record_id: int, address: str) -> httpx.Response:
            body = postmark_bounce(record_id, address, "SoftBounce")
            return await client.post(post, json=body, headers=basic(POSTMARK_SECRET))

        # Two distinct reports, each sent three times at once: two soft bounces, not six.
        first = await asyncio.gather(*(report(n, soft) for n in (9001, 9002) * 3))
        listed_after_two = await suppressions(client)
        third = await report(9003, soft)
        # The same reports through SES count for the other address on their own.
        ses = signer.notification(
            ses_bounce(f"soft-{run_id}", other, bounce_type="Transient"), message_id="m-soft"
        )
        ses_answer = await client.post("/v1/provider-reports/ses", json=ses)
        listed = await suppressions(client)

    # A request that met the same report being recorded is told to send it again later.
    assert {a.status_code for a in first} <= {200, 503}, [a.text for a in first]
    assert listed_after_two["suppressions"] == []
    assert third.status_code == 200 and third.json()["suppressed"] == 1
    assert ses_answer.json()["suppressed"] == 0
    [entry] = listed["suppressions"]
    assert (entry["focal_point"], entry["reason"], entry["report_id"]) == (
        k(soft),
        "soft-bounce",
        "9003",
    )
    client_db = mongo.new_client(stack.mongodb_url)
    try:
        db = mongo.database(client_db, settings.mongodb_database)
        slots = sorted([d["_id"] async for d in db["notifier_soft_bounces"].find({})])
    finally:
        await client_db.close()
    assert slots == sorted([f"{k(soft)}#1", f"{k(soft)}#2", f"{k(soft)}#3", f"{k(other)}#1"])


async def test_bad_reports_refused_with_named_problem(
    settings: NotifierSettings, run_id: str, isolated: None
) -> None:
    signer = Signer()
    good = signer.notification(
        ses_complaint(f"c-{run_id}", f"x-{run_id}@example.org"), message_id="m"
    )
    forged = {**good, "Message": good["Message"].replace("x-", "y-")}
    other_topic = signer.notification(
        ses_complaint("c", "x@example.org"), message_id="m", topic=f"{TOPIC_ARN}-other"
    )
    broken = signer.notification({"notificationType": "Bounce", "bounce": {}}, message_id="m")
    ses = "/v1/provider-reports/ses"
    postmark = "/v1/provider-reports/postmark"

    async with serving(app_with(settings, signer)) as client:
        answers = {
            "forged": await client.post(ses, json=forged),
            "other topic": await client.post(ses, json=other_topic),
            "broken": await client.post(ses, json=broken),
            "not json": await client.post(ses, content=b"{nope"),
            "postmark no email": await client.post(
                postmark,
                json={**postmark_bounce(1, "a@example.org"), "Email": ""},
                headers=basic(POSTMARK_SECRET),
            ),
            "postmark no auth": await client.post(
                postmark, json=postmark_bounce(1, "a@example.org")
            ),
        }
        listed = await suppressions(client)
    unconfigured = settings.model_copy(update={"ses_topic_arns": ""})
    async with serving(app_with(unconfigured, signer)) as client:
        off = await client.post(ses, json=good)

    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "forged": 401,
        "other topic": 403,
        "broken": 422,
        "not json": 400,
        "postmark no email": 422,
        "postmark no auth": 401,
    }
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers.values())
    assert answers["forged"].json()["errors"][0]["field"] == "Signature"
    assert answers["broken"].json()["errors"][0]["field"] == "Message.bounce.bounceType"
    assert answers["postmark no email"].json()["errors"][0]["field"] == "Email"
    assert listed["suppressions"] == []
    assert off.status_code == 403 and "SES_TOPIC_ARNS" in off.json()["detail"]


async def test_subscription_confirmation_of_allowed_topic_confirmed(
    settings: NotifierSettings, isolated: None
) -> None:
    signer = Signer()
    confirm_url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=abc"
    confirmation = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "abc",
        "TopicArn": TOPIC_ARN,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": confirm_url,
        "Timestamp": "2026-12-03T09:00:00.000Z",
    }
    other = {**confirmation, "TopicArn": f"{TOPIC_ARN}-other", "SubscribeURL": confirm_url + "2"}

    async with serving(app_with(settings, signer)) as client:
        allowed = await client.post("/v1/provider-reports/ses", json=signer.sign(confirmation))
        refused = await client.post("/v1/provider-reports/ses", json=signer.sign(other))

    assert allowed.status_code == 200 and allowed.json()["status"] == "confirmed"
    assert refused.status_code == 403
    assert confirm_url in signer.fetched
    assert confirm_url + "2" not in signer.fetched


async def test_record_soft_bounce_after_replica_died_counted_once(
    stack: Stack, run_id: str, isolated: None
) -> None:
    client = mongo.new_client(stack.mongodb_url)
    db = mongo.database(client, f"test_{run_id}")
    store = Suppressions(db)
    key = f"died-{run_id}@example.org"
    now = datetime.now(UTC)
    died_before_slot = Report("postmark", "1", key, Event.SOFT_BOUNCE)
    died_after_slot = Report("postmark", "2", key, Event.SOFT_BOUNCE)
    in_progress = Report("postmark", "3", key, Event.SOFT_BOUNCE)
    try:
        # What replicas that died left: a report recorded without its slot, another whose slot
        # was taken but not written back, and one being recorded right now.
        stale = now - REPORT_LEASE * 2
        for report, at in ((died_before_slot, stale), (died_after_slot, stale), (in_progress, now)):
            await db[PROVIDER_REPORTS].insert_one(
                {"_id": report_key(report), "email_key": key, "at": at}
            )
        await db[SOFT_BOUNCES].insert_one(
            {"_id": f"{key}#1", "report": report_key(died_after_slot), "at": stale}
        )

        with pytest.raises(ReportInProgress):
            await store.record(in_progress, soft_limit=3, now=now)
        taken_over = [await store.record(r, 3, now) for r in (died_after_slot, died_before_slot)]
        again = await store.record(died_after_slot, 3, now)
        slots = sorted([d["_id"] async for d in db[SOFT_BOUNCES].find({})])
    finally:
        await client.close()

    assert [a.soft_bounces for a in taken_over] == [1, 2]
    assert (again.new, again.soft_bounces) == (False, 1)
    assert slots == [f"{key}#1", f"{key}#2"]


async def test_lift_suppression_emails_again_soft_bounces_from_zero(
    stack: Stack, settings: NotifierSettings, run_id: str, handler: Scripted, isolated: None
) -> None:
    (person,) = addresses(run_id, "lifted", 1)
    k = settings.email_keys().key  # records name people by the keyed hash
    post = "/v1/provider-reports/postmark"
    await register(stack, settings, [person])

    async with serving(app_with(settings, Signer())) as client:
        for record_id in (1, 2, 3):
            body = postmark_bounce(record_id, person, "SoftBounce")
            await client.post(post, json=body, headers=basic(POSTMARK_SECRET))
        suppressed = await suppressions(client)
        unauthorised = await client.delete(f"/v1/suppressions/{k(person)}")
        lifted = await client.delete(f"/v1/suppressions/{k(person)}", headers=OPERATOR)
        again = await client.delete(f"/v1/suppressions/{k(person)}", headers=OPERATOR)
        await announce(stack, settings, client, f"pilot-{run_id}", {"sent": 1})
        soft = postmark_bounce(4, person, "SoftBounce")
        counted = await client.post(post, json=soft, headers=basic(POSTMARK_SECRET))
        listed = await suppressions(client)

    assert [e["reason"] for e in suppressed["suppressions"]] == ["soft-bounce"]
    assert unauthorised.status_code == 401
    assert (lifted.status_code, again.status_code) == (204, 404)
    assert handler.count() == Counter({person: 1})
    assert counted.json()["suppressed"] == 0  # the count started again: one soft bounce
    assert listed["suppressions"] == []
