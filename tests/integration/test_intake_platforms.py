"""Each platform's delivery posted to the running intake: its answer, what reaches the topic."""

from __future__ import annotations

import json
from functools import partial

import pytest

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.events import SurveyResponse
from tests.fixtures.platforms import (
    SECRETS,
    google_forms_request,
    jotform_request,
    kobo_request,
    secret_variable,
    typeform_event,
    typeform_request,
    typeform_signature,
)
from tests.support import Stack, read_topic, serving, settings_for

pytestmark = pytest.mark.integration

SURVEY = "cities-2024-priorities"


@pytest.fixture
def settings(stack: Stack, run_id: str, monkeypatch: pytest.MonkeyPatch) -> IntakeSettings:
    for source, secret in SECRETS.items():
        monkeypatch.setenv(secret_variable(SURVEY, source), f"rotated-out {secret}")
    return settings_for(IntakeSettings, stack.environment(run_id))


REQUESTS = {
    "kobotoolbox": (
        partial(kobo_request, SURVEY),
        "kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998",
    ),
    "typeform": (partial(typeform_request, SURVEY), "typeform:a3a12ec67a1365927098a606107fac15"),
    "jotform": (partial(jotform_request, SURVEY), "jotform:5912345678901234567"),
    "google-forms": (
        partial(google_forms_request, SURVEY),
        "google-forms:2_ABaOnudE8yS5vZl3kxR1pQ7tWm",
    ),
}
EXPECTED = {
    "kobotoolbox": ("local_government", "VN", ["sdg-11", "sdg-6"], True),
    "typeform": ("local_government", "VN", ["sdg-11", "sdg-6"], True),
    "jotform": ("national_government", "LK", ["sdg-11", "sdg-13"], True),
    "google-forms": ("cso", "TR", ["sdg-5", "sdg-10"], False),
}


async def test_receive_platform_webhooks_published_once_with_codes(
    stack: Stack, settings: IntakeSettings
) -> None:
    answers = {}
    async with serving(create_app(settings)) as client:
        for source, (build, _) in REQUESTS.items():
            url, body, headers = build()
            first = await client.post(url, content=body, headers=headers)
            again = await client.post(url, content=body, headers=headers)
            answers[source] = (first, again)

    for source, (first, again) in answers.items():
        assert first.status_code == 202, (source, first.text)
        assert first.json() == {"response_id": REQUESTS[source][1], "status": "accepted"}
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    records = await read_topic(stack.kafka, settings.topic_responses)
    events = {
        record.key.decode(): SurveyResponse.model_validate_json(record.value) for record in records
    }
    assert len(records) == len(REQUESTS)
    for source, (_, response_id) in REQUESTS.items():
        event = events[response_id]
        assert (
            event.respondent.type,
            event.respondent.country,
            event.development_priorities,
            event.focal_point is not None,
        ) == EXPECTED[source]
        assert event.source == source
    assert SECRETS["jotform"] not in b"".join(record.value for record in records).decode()


@pytest.mark.parametrize("source", sorted(REQUESTS))
async def test_receive_platform_webhook_bad_credentials_401(
    settings: IntakeSettings, source: str
) -> None:
    url, body, headers = REQUESTS[source][0]()
    url = url.replace(SECRETS["jotform"], "guess")
    headers = {name: value for name, value in headers.items() if name == "content-type"}
    async with serving(create_app(settings)) as client:
        answer = await client.post(url, content=body, headers=headers)

    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"]


async def test_receive_typeform_unknown_country_422_names_field_and_value(
    settings: IntakeSettings,
) -> None:
    event = typeform_event()
    for answer in event["form_response"]["answers"]:
        if answer["field"]["ref"] == "country":
            answer["text"] = "Atlantis"
    body = json.dumps(event).encode()
    headers = {
        "content-type": "application/json",
        "typeform-signature": typeform_signature(body, SECRETS["typeform"]),
    }
    async with serving(create_app(settings)) as client:
        answer = await client.post(f"/v1/webhooks/typeform/{SURVEY}", content=body, headers=headers)

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"] == [
        {
            "field": "respondent.country",
            "rule": "mapping",
            "message": "'country': unknown country 'Atlantis'",
        }
    ]


async def test_receive_jotform_wrong_content_type_415(settings: IntakeSettings) -> None:
    url, body, _ = jotform_request(SURVEY)
    async with serving(create_app(settings)) as client:
        answer = await client.post(url, content=body, headers={"content-type": "application/json"})

    assert answer.status_code == 415
    assert "multipart/form-data" in answer.json()["detail"]


async def test_receive_platform_webhook_mongodb_down_503(settings: IntakeSettings) -> None:
    # Kobo retries only 502/503/504: a claim store that cannot answer must never give a 500.
    unreachable = settings.model_copy(
        update={"mongodb_url": "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=1000"}
    )
    url, body, headers = kobo_request(SURVEY)
    async with serving(create_app(unreachable)) as client:
        answer = await client.post(url, content=body, headers=headers)

    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "MongoDB" in answer.json()["detail"]
