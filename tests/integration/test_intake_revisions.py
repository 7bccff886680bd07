"""Revisions at the intake, against the real broker and database: a new revision is published,
the same one is a duplicate, an older one than the newest accepted is superseded."""

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


def body(revision: int | None, country: str = "VN") -> bytes:
    response: dict[str, Any] = canonical_response("resp-rev")
    response["respondent"] = {**response["respondent"], "country": country}
    if revision is not None:
        response["revision"] = revision
    return dumps(response)


async def test_receive_webhook_revisions_published_once_each_older_superseded(
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
        (200, "superseded"),
        (200, "superseded"),
        (200, "superseded"),
    ]
    records = await read_topic(stack.kafka, settings.topic_responses)
    events = [SurveyResponse.model_validate_json(record.value) for record in records]
    assert [(e.revision, e.respondent.country) for e in events] == [(1, "VN"), (2, "TH"), (3, "LA")]
    assert {record.key for record in records} == {b"generic:resp-rev"}  # one partition
    assert b'"revision"' not in records[0].value  # revision 1 written as before revisions


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

    assert answers == [(202, "accepted"), (200, "superseded"), (200, "superseded")]
    (record,) = await read_topic(stack.kafka, settings.topic_responses)
    edited = SurveyResponse.model_validate_json(record.value)
    assert edited.response_id == "kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998"
    assert (edited.revision > 1, edited.review, edited.respondent.country) == (
        True,
        "approved",
        "TH",
    )
