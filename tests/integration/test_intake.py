"""The intake against the real broker and database: what it answers, what reaches the topic."""

from __future__ import annotations

import json

import pytest

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.events import SurveyResponse
from tests.support import (
    OPERATOR,
    OPERATOR_TOKEN,
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
SECRET_ENV = "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC"
PILOT = {
    "pilot_id": "pilot-2025-007",
    "title": "Flood early warning for coastal districts",
    "summary": "Early warning systems for coastal flooding.",
    "themes": ["climate-resilience", "disaster-risk-reduction"],
    "sdgs": ["sdg-13"],
    "modalities": ["pilot-cofinancing"],
    "eligible_countries": ["VN", "ID", "LK"],
    "lead_agency": "UNOSSC",
    "apply_by": "2025-03-31",
    "url": "https://example.org/pilots/007",
}


@pytest.fixture
def settings(stack: Stack, run_id: str, monkeypatch: pytest.MonkeyPatch) -> IntakeSettings:
    from tests.support import WEBHOOK_SECRET

    monkeypatch.setenv(SECRET_ENV, f"whsec_b2xkc2VjcmV0b2xkc2VjcmV0 {WEBHOOK_SECRET}")
    return settings_for(
        IntakeSettings,
        stack.environment(run_id),
        operator_token=OPERATOR_TOKEN,
    )


async def test_receive_webhook_publishes_once(stack: Stack, settings: IntakeSettings) -> None:
    body = dumps(canonical_response("resp-1"))
    async with serving(create_app(settings)) as client:
        first = await client.post(WEBHOOK, content=body, headers=signed_headers(body, "msg-1"))
        again = await client.post(WEBHOOK, content=body, headers=signed_headers(body, "msg-2"))

    assert first.status_code == 202
    assert first.json() == {"response_id": "generic:resp-1", "status": "accepted"}
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    records = await read_topic(stack.kafka, settings.topic_responses)
    assert len(records) == 1
    assert records[0].key == b"generic:resp-1"
    event = SurveyResponse.model_validate_json(records[0].value)
    assert event.source == "generic"
    assert event.respondent.city == "Đà Nẵng"
    assert event.development_priorities == ["sdg-11", "sdg-6"]


async def test_receive_webhook_duplicate_survives_restart(settings: IntakeSettings) -> None:
    body = dumps(canonical_response("resp-restart"))
    async with serving(create_app(settings)) as client:
        first = await client.post(WEBHOOK, content=body, headers=signed_headers(body, "m1"))
    async with serving(create_app(settings)) as client:  # a new process, or another replica
        again = await client.post(WEBHOOK, content=body, headers=signed_headers(body, "m2"))

    assert (first.status_code, again.status_code) == (202, 200)


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"webhook-signature": "v1,AAAA"}, "no signature matches"),
        ({"webhook-signature": "garbage-without-comma"}, "malformed"),
        ({"webhook-timestamp": "1700000000"}, "5 minutes"),
        ({"webhook-id": ""}, "webhook-id"),
    ],
)
async def test_receive_webhook_bad_credentials_401(
    settings: IntakeSettings, headers: dict[str, str], detail: str
) -> None:
    body = dumps(canonical_response("resp-401"))
    sent = {**signed_headers(body, "msg-401"), **headers}
    async with serving(create_app(settings)) as client:
        answer = await client.post(WEBHOOK, content=body, headers=sent)

    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert detail in answer.json()["detail"]


async def test_receive_webhook_invalid_names_each_field(settings: IntakeSettings) -> None:
    invalid = canonical_response(
        "resp-422",
        respondent={"type": "mayor", "country": "XX", "city": "Hanoi"},
        development_priorities=["sdg-99"],
        focal_point={"name": "A", "email": "not-an-email", "consent": True},
    )
    body = dumps(invalid)
    async with serving(create_app(settings)) as client:
        answer = await client.post(WEBHOOK, content=body, headers=signed_headers(body, "m"))

    assert answer.status_code == 422
    fields = {error["field"] for error in answer.json()["errors"]}
    assert fields == {
        "respondent.type",
        "respondent.country",
        "development_priorities.0",
        "focal_point.email",
    }


async def test_receive_webhook_rejections_have_status_and_problem(
    settings: IntakeSettings,
) -> None:
    body = dumps(canonical_response("resp-x"))
    big = b'{"pad": "' + b"x" * (settings.max_body_bytes + 1) + b'"}'
    async with serving(create_app(settings)) as client:
        unknown_survey = await client.post(
            "/v1/webhooks/generic/no-such-survey", content=body, headers=signed_headers(body, "a")
        )
        unknown_source = await client.post(
            f"/v1/webhooks/carrier-pigeon/{SURVEY}", content=body, headers=signed_headers(body, "b")
        )
        too_large = await client.post(WEBHOOK, content=big, headers=signed_headers(big, "c"))
        wrong_type = await client.post(
            WEBHOOK,
            content=body,
            headers={**signed_headers(body, "d"), "content-type": "text/plain"},
        )
        not_json = await client.post(
            WEBHOOK, content=b"{oops", headers=signed_headers(b"{oops", "e")
        )

    statuses = [
        r.status_code for r in (unknown_survey, unknown_source, too_large, wrong_type, not_json)
    ]
    assert statuses == [404, 404, 413, 415, 400]
    for answer in (unknown_survey, unknown_source, too_large, wrong_type, not_json):
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["detail"]


async def test_receive_webhook_kafka_down_503_then_accepted(
    stack: Stack, settings: IntakeSettings
) -> None:
    body = dumps(canonical_response("resp-503"))
    unreachable = settings.model_copy(
        update={"kafka_bootstrap_servers": "127.0.0.1:9", "publish_timeout_seconds": 2.0}
    )
    async with serving(create_app(unreachable)) as client:
        refused = await client.post(WEBHOOK, content=body, headers=signed_headers(body, "m1"))
    async with serving(create_app(settings)) as client:
        retried = await client.post(WEBHOOK, content=body, headers=signed_headers(body, "m1"))

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert retried.status_code == 202
    records = await read_topic(stack.kafka, settings.topic_responses)
    assert [record.key for record in records] == [b"generic:resp-503"]


async def test_announce_pilot_once_with_operator_token(
    stack: Stack, settings: IntakeSettings
) -> None:
    token = OPERATOR
    async with serving(create_app(settings)) as client:
        no_token = await client.post("/v1/pilots", json=PILOT)
        first = await client.post("/v1/pilots", json=PILOT, headers=token)
        again = await client.post("/v1/pilots", json=PILOT, headers=token)
        invalid = await client.post(
            "/v1/pilots", json={**PILOT, "pilot_id": "p2", "themes": ["space"]}, headers=token
        )

    assert no_token.status_code == 401
    assert (first.status_code, again.status_code) == (202, 200)
    assert invalid.status_code == 422
    assert [e["field"] for e in invalid.json()["errors"]] == ["themes.0"]
    records = await read_topic(stack.kafka, settings.topic_pilots)
    assert [json.loads(r.value)["pilot_id"] for r in records] == ["pilot-2025-007"]
