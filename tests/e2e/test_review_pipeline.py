"""Revisions and reviews through the running intake, analytics and notifier processes: a revision
that changes a response's country moves its count, a rejection takes it out, an approval brings
it back; an edited Kobo submission replaces the original; the review queue lists what waits; a
rejected response's focal point gets no pilot email until it is approved again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.kafka import consumer_lag
from tests.fixtures.platforms import (
    SECRETS,
    kobo_edited_submission,
    kobo_request,
    kobo_submission,
    secret_variable,
)
from tests.support import (
    OPERATOR,
    WEBHOOK_SECRET,
    Mailbox,
    Stack,
    announce_until_sent,
    assert_clean_exit,
    canonical_response,
    confirm_focal_points,
    dumps,
    eventually,
    flood_pilot,
    signed_headers,
    start_service,
)

pytestmark = pytest.mark.e2e

SURVEY = "cities-2024-priorities"
SUMMARY = f"/v1/surveys/{SURVEY}/summary"


@dataclass(frozen=True)
class Services:
    intake: str
    analytics: str
    notifier: str


@pytest.fixture
def services(stack: Stack, run_id: str, tmp_path: Path) -> Iterator[Services]:
    environment = {
        **stack.environment(run_id),
        secret_variable(SURVEY, "generic"): WEBHOOK_SECRET,
        **{secret_variable(SURVEY, source): secret for source, secret in SECRETS.items()},
    }
    started = [
        start_service(name, environment, tmp_path) for name in ("intake", "analytics", "notifier")
    ]
    try:
        for service in started:
            service.wait_ready(within=120)
        yield Services(*(service.url for service in started))
    finally:
        for service in started:
            assert_clean_exit(service, service.terminate())


def generic(response_id: str, country: str, city: str, revision: int | None = None) -> bytes:
    body = canonical_response(response_id)
    body["respondent"] = {**body["respondent"], "country": country, "city": city}
    if revision is not None:
        body["revision"] = revision
    return dumps(body)


async def test_revision_rejection_approval_move_counts_through_the_api(
    services: Services,
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:

        async def post(body: bytes, message_id: str) -> httpx.Response:
            return await client.post(
                f"{services.intake}/v1/webhooks/generic/{SURVEY}",
                content=body,
                headers=signed_headers(body, message_id),
            )

        async def summary(**query: str) -> dict[str, Any]:
            answer = await client.get(
                f"{services.analytics}{SUMMARY}", params=query, headers=OPERATOR
            )
            assert answer.status_code == 200, answer.text
            loaded: dict[str, Any] = answer.json()
            return loaded

        for n, (country, city) in enumerate([("VN", "Hà Nội"), ("VN", "Huế"), ("KE", "Kisumu")]):
            assert (await post(generic(f"e2e-{n}", country, city), f"m{n}")).status_code == 202
        before = await eventually(summary, lambda s: s["total"] == 3, within=90)
        assert before["by_country"] == {"VN": 2, "KE": 1}
        assert before["by_review"] == {"pending": 3, "approved": 0, "rejected": 0}

        # Revision 2 of e2e-0 moves it from Viet Nam to Thailand; revision 1 again is late.
        assert (await post(generic("e2e-0", "TH", "Bangkok", 2), "r2")).status_code == 202
        late = await post(generic("e2e-0", "VN", "Hà Nội", 1), "r1")
        assert (late.status_code, late.json()["status"]) == (200, "duplicate")
        moved = await eventually(summary, lambda s: s["by_country"].get("TH") == 1, within=90)
        assert (moved["total"], moved["by_country"]) == (3, {"VN": 1, "KE": 1, "TH": 1})

        review = f"{services.intake}/v1/responses/{SURVEY}/generic:e2e-0/review"
        rejected = await client.post(
            review, json={"status": "rejected", "note": "spam"}, headers=OPERATOR
        )
        assert rejected.status_code == 202, rejected.text
        lower = await eventually(summary, lambda s: s["total"] == 2, within=90)
        assert lower["by_country"] == {"VN": 1, "KE": 1}
        assert lower["by_review"] == {"pending": 2, "approved": 0, "rejected": 1}

        approved = await client.post(review, json={"status": "approved"}, headers=OPERATOR)
        assert approved.status_code == 202
        restored = await eventually(summary, lambda s: s["total"] == 3, within=90)
        assert restored["by_country"] == {"VN": 1, "KE": 1, "TH": 1}
        assert restored["by_review"] == {"pending": 2, "approved": 1, "rejected": 0}
        valid = await summary(review="approved")
        assert (valid["total"], valid["by_country"]) == (1, {"TH": 1})

        queue = await client.get(
            f"{services.analytics}/v1/review-queue", params={"country": "VN"}, headers=OPERATOR
        )
        assert queue.status_code == 200, queue.text
        assert [item["response_id"] for item in queue.json()["responses"]] == ["generic:e2e-1"]
        assert queue.json()["responses"][0]["response"]["respondent"]["city"] == "Huế"
        anonymous = await client.get(f"{services.analytics}/v1/review-queue")
        assert anonymous.status_code == 401

        retracted = await client.delete(
            f"{services.intake}/v1/responses/{SURVEY}/generic:e2e-2", headers=OPERATOR
        )
        assert retracted.status_code == 202
        final = await eventually(summary, lambda s: s["total"] == 2, within=90)
        assert final["by_country"] == {"VN": 1, "TH": 1}
        assert final["by_review"] == {"pending": 1, "approved": 1, "rejected": 0}


async def test_kobo_edited_submission_replaces_the_original_through_the_api(
    services: Services,
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for submission in (kobo_submission(), kobo_edited_submission()):
            path, body, headers = kobo_request(SURVEY, submission)
            answer = await client.post(f"{services.intake}{path}", content=body, headers=headers)
            assert answer.status_code == 202, answer.text

        async def summary() -> dict[str, Any]:
            answer = await client.get(f"{services.analytics}{SUMMARY}", headers=OPERATOR)
            loaded: dict[str, Any] = answer.json()
            return loaded

        edited = await eventually(summary, lambda s: s["by_country"] == {"TH": 1}, within=90)
        assert edited["total"] == 1
        # The edit carried Kobo's "Approved" validation status.
        assert edited["by_review"] == {"pending": 0, "approved": 1, "rejected": 0}
        assert [city["city"] for city in edited["by_city"]] == ["Bangkok"]


async def test_rejected_response_focal_point_mailed_only_once_approved(
    services: Services, stack: Stack, run_id: str
) -> None:
    kept, rejected = f"kept-{run_id}@example.org", f"rejected-{run_id}@example.org"
    environment = stack.environment(run_id)
    mailbox = Mailbox(stack.mail_api)
    async with httpx.AsyncClient(timeout=30) as client:
        for response_id, email in (("fp-kept", kept), ("fp-rejected", rejected)):
            body = dumps(
                canonical_response(
                    response_id,
                    focal_point={"name": "Focal Point", "email": email, "consent": True},
                )
            )
            answer = await client.post(
                f"{services.intake}/v1/webhooks/generic/{SURVEY}",
                content=body,
                headers=signed_headers(body, response_id),
            )
            assert answer.status_code == 202, answer.text
        await confirm_focal_points(client, mailbox, kept, rejected, notifier=services.notifier)
        review = f"{services.intake}/v1/responses/{SURVEY}/generic:fp-rejected/review"

        async def reviews_lag() -> int:
            group = f"{environment['NOTIFIER_GROUP_ID']}.reviews"
            return await consumer_lag(stack.kafka, group, environment["TOPIC_REVIEWS"])

        answer = await client.post(review, json={"status": "rejected"}, headers=OPERATOR)
        assert answer.status_code == 202, answer.text
        await eventually(reviews_lag, lambda lag: lag == 0, within=60)
        pilot = flood_pilot(f"pilot-{run_id}", "https://example.org/pilots/review")
        await announce_until_sent(client, services.intake, services.notifier, pilot, sent=1)
        while_rejected = await mailbox.messages_to(rejected)

        answer = await client.post(review, json={"status": "approved"}, headers=OPERATOR)
        assert answer.status_code == 202, answer.text

        async def counts() -> dict[str, int]:
            answer = await client.get(
                f"{services.notifier}/v1/deliveries",
                params={"pilot_id": pilot["pilot_id"]},
                headers=OPERATOR,
            )
            return dict(answer.json()["counts"])

        # The pilot is still open: the approval delivers it to the person it held back.
        await eventually(counts, lambda c: c == {"sent": 2}, within=60)

    assert while_rejected == []
    assert len(await mailbox.messages_to(kept)) == 1
    assert len(await mailbox.messages_to(rejected)) == 1
