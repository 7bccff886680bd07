"""Revisions at the intake, against the real broker and database: a new revision is published, a
revision delivered before is a duplicate, and the first delivery of an older one than a revision
accepted before is superseded."""

from __future__ import annotations

from typing import Any

import pytest

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.events import SurveyResponse
from tests.fixtures.platforms import (
    SECRETS,
    kobo_edited_submission,
    kobo_request,
    kobo_submission,
    kobo_validation_statuses,
    secret_variable,
)
from tests.support import (
    OPERATOR_TOKEN,
    WEBHOOK_SECRET,
    Stack,
    canonical_response,
    dumps,
    read_topic,
    serving,
    settings_for,
    signed_headers,
)

pytestmark = pytest.mark.integration

SURVEY = "cities-2024-priorities"
WEBHOOK = f"/v1/webhooks/generic/{SURVEY}"


@pytest.fixture
def settings(stack: Stack, run_id: str, monkeypatch: pytest.MonkeyPatch) -> IntakeSettings:
    monkeypatch.setenv("WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC", WEBHOOK_SECRET)
    return settings_for(IntakeSettings, stack.environment(run_id), operator_token=OPERATOR_TOKEN)


def body(revision: int | None, country: str = "VN", response_id: str = "resp-rev") -> bytes:
    response: dict[str, Any] = canonical_response(response_id)
    response["respondent"] = {**response["respondent"], "country": country}
    if revision is not None:
        response["revision"] = revision
    return dumps(response)


async def test_receive_webhook_revisions_published_once_each_redelivery_duplicate(
    stack: Stack, settings: IntakeSettings
) -> None:
    answers = []
    async with serving(create_app(settings)) as client:
        for number, (revision, country) in enumerate(
            [(None, "VN"), (2, "TH"), (2, "TH"), (3, "LA"), (2, "TH"), (1, "VN"), (None, "VN")]
        ):
            content = body(revision, country)
            answer = await client.post(
                WEBHOOK, content=content, headers=signed_headers(content, f"m{number}")
            )
            answers.append((answer.status_code, answer.json()["status"]))

    assert answers == [
        (202, "accepted"),
        (202, "accepted"),
        (200, "duplicate"),
        (202, "accepted"),
        (200, "duplicate"),  # delivered before revision 3 was: a redelivery, as it says
        (200, "duplicate"),
        (200, "duplicate"),
    ]
    records = await read_topic(stack.kafka, settings.topic_responses)
    events = [SurveyResponse.model_validate_json(record.value) for record in records]
    assert [(e.revision, e.respondent.country) for e in events] == [(1, "VN"), (2, "TH"), (3, "LA")]
    assert {record.key for record in records} == {b"generic:resp-rev"}  # one partition
    assert b'"revision"' not in records[0].value  # revision 1 written as before revisions


async def test_receive_webhook_older_revisions_first_delivered_late_superseded(
    stack: Stack, settings: IntakeSettings
) -> None:
    kobo_edit, older_edit = 1_717_000_000, 1_716_000_000  # numbered by their times in seconds
    deliveries = [(3, "LA"), (2, "TH"), (None, "VN"), (2, "TH"), (4, "KH"), (kobo_edit, "MM")]
    deliveries += [(older_edit, "MY"), (None, "VN")]
    answers = []
    async with serving(create_app(settings)) as client:
        for number, (revision, country) in enumerate(deliveries):
            content = body(revision, country, "resp-late")
            answer = await client.post(
                WEBHOOK, content=content, headers=signed_headers(content, f"l{number}")
            )
            answers.append((answer.status_code, answer.json()["status"]))

    assert answers == [
        (202, "accepted"),
        (200, "superseded"),  # revision 3 sealed every revision below it
        (200, "superseded"),
        (200, "duplicate"),  # delivered before
        (202, "accepted"),
        (202, "accepted"),
        # No seal names an older edit numbered by its time: published, and ordered by the
        # consumers (analytics and the notifier keep the newest revision).
        (202, "accepted"),
        (200, "duplicate"),
    ]
    records = await read_topic(stack.kafka, settings.topic_responses)
    events = [SurveyResponse.model_validate_json(record.value) for record in records]
    assert [e.revision for e in events] == [3, 4, kobo_edit, older_edit]


@pytest.mark.parametrize("revision", [0, -1, "2", True, 1.5, 2**60])
async def test_receive_webhook_bad_revision_refused_naming_it(
    settings: IntakeSettings, revision: Any
) -> None:
    response = canonical_response("resp-bad-rev") | {"revision": revision}
    content = dumps(response)
    async with serving(create_app(settings)) as client:
        answer = await client.post(WEBHOOK, content=content, headers=signed_headers(content, "m"))

    assert answer.status_code == 422
    assert [error["field"] for error in answer.json()["errors"]] == ["revision"]


async def test_receive_kobo_edited_submission_published_as_newer_revision(
    stack: Stack, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for source, secret in SECRETS.items():
        monkeypatch.setenv(secret_variable(SURVEY, source), secret)
    settings = settings_for(IntakeSettings, stack.environment(run_id))
    rejected = kobo_submission() | {
        "_validation_status": kobo_validation_statuses()["validation_status_not_approved"]
    }
    answers = []
    async with serving(create_app(settings)) as client:
        # The edit arrives first (an import of a later export), then the original, twice.
        for submission in (kobo_edited_submission(), rejected, kobo_submission()):
            url, content, headers = kobo_request(SURVEY, submission)
            answer = await client.post(url, content=content, headers=headers)
            answers.append((answer.status_code, answer.json()["status"]))

    assert answers == [(202, "accepted"), (200, "superseded"), (200, "duplicate")]
    (record,) = await read_topic(stack.kafka, settings.topic_responses)
    edited = SurveyResponse.model_validate_json(record.value)
    assert edited.response_id == "kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998"
    assert (edited.revision > 1, edited.review, edited.respondent.country) == (
        True,
        "approved",
        "TH",
    )
