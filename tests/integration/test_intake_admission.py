"""Hostile deliveries against the real broker and database: each gets a 422 naming the field and
the rule, nothing of them reaches the topic, and a response is its survey and its id."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from services.analytics.app import create_app as create_analytics
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore, Positioned
from services.intake.__main__ import import_file
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared import mongo
from shared.events import SurveyResponse
from tests.fixtures.platforms import (
    JOTFORM_CONTENT_TYPE,
    SECRETS,
    jotform_body,
    jotform_delivery,
    multipart,
    secret_variable,
)
from tests.support import (
    OPERATOR,
    WEBHOOK_SECRET,
    Stack,
    canonical_response,
    eventually,
    produce,
    read_topic,
    serving,
    settings_for,
    signed_headers,
)

pytestmark = pytest.mark.integration

SURVEY = "cities-2024-priorities"
OTHER_SURVEYS = ("cities-2024-capacity", "cities-2024-collaboration")


@pytest.fixture
def settings(stack: Stack, run_id: str, monkeypatch: pytest.MonkeyPatch) -> IntakeSettings:
    for survey in (SURVEY, *OTHER_SURVEYS):
        monkeypatch.setenv(secret_variable(survey, "generic"), WEBHOOK_SECRET)
    monkeypatch.setenv(secret_variable(SURVEY, "jotform"), SECRETS["jotform"])
    return settings_for(IntakeSettings, stack.environment(run_id))


def nested(levels: int) -> Any:
    value: Any = "deep"
    for _ in range(levels):
        value = {"sub": value}
    return value


def future() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


FOCAL_POINT = {"email": "an.nguyen@example.org", "consent": True}
# (what the sender posts, the field and the rule the 422 must name)
GENERIC_CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "nul-key": ({"answers": {"q\x00": "x"}}, "answers.q\\u0000", "key-name"),
    "dot-key": ({"answers": {"q.1": "x"}}, "answers.q.1", "key-name"),
    "tab-key": ({"answers": {"q\t1": "x"}}, "answers.q\\u00091", "key-name"),
    "dollar-key": ({"answers": {"$where": "x"}}, "answers.$where", "key-name"),
    "nested-200": ({"answers": {"q1": nested(200)}}, "answers.q1" + ".sub" * 30, "max-depth"),
    "nested-300": ({"answers": {"q1": nested(300)}}, "answers.q1" + ".sub" * 30, "max-depth"),
    "list-in-list": ({"answers": {"q1": ["a", ["b"]]}}, "answers.q1.1", "nested-list"),
    "huge-int": ({"answers": {"q1": 2**64}}, "answers.q1", "int64-range"),
    "nan": ({"answers": {"q1": float("nan")}}, "answers.q1", "finite-number"),
    "surrogate": ({"answers": {"q1": "\ud800"}}, "answers.q1", "unicode"),
    "future-date": ({"submitted_at": None}, "submitted_at", "date-window"),
    "before-2000": ({"submitted_at": "1999-12-31T23:59:59Z"}, "submitted_at", "date-window"),
    "bidi-name": (
        {"focal_point": {**FOCAL_POINT, "name": "\u202eAn Nguyen"}},
        "focal_point.name",
        "bidi-control",
    ),
    "bidi-city": (
        {"respondent": {"type": "local_government", "country": "VN", "city": "Da\u202eNang"}},
        "respondent.city",
        "bidi-control",
    ),
}


async def test_receive_hostile_deliveries_422_naming_field_and_rule_nothing_published(
    stack: Stack, settings: IntakeSettings
) -> None:
    answers = {}
    async with serving(create_app(settings)) as client:
        for case, (overrides, _, _) in GENERIC_CASES.items():
            if "submitted_at" in overrides and overrides["submitted_at"] is None:
                overrides = {"submitted_at": future()}
            body = json.dumps(canonical_response(f"hostile-{case}", **overrides)).encode()
            answers[case] = await client.post(
                f"/v1/webhooks/generic/{SURVEY}", content=body, headers=signed_headers(body, case)
            )
        fields = jotform_fields()
        raw = json.loads(fields["rawRequest"])
        fields["rawRequest"] = json.dumps({**raw, "submitDate": "999999999999999"})
        answers["jotform-submit-date"] = await client.post(
            f"/v1/webhooks/jotform/{SURVEY}?token={SECRETS['jotform']}",
            content=multipart(fields),
            headers={"content-type": JOTFORM_CONTENT_TYPE},
        )
        marker = json.dumps(canonical_response("after-the-hostile-ones")).encode()
        accepted = await client.post(
            f"/v1/webhooks/generic/{SURVEY}",
            content=marker,
            headers=signed_headers(marker, "marker"),
        )

    expected = {case: (field, rule) for case, (_, field, rule) in GENERIC_CASES.items()}
    expected["jotform-submit-date"] = ("submitted_at", "date-window")
    for case, answer in answers.items():
        assert answer.status_code == 422, (case, answer.text[:500])
        assert answer.headers["content-type"] == "application/problem+json", case
        errors = answer.json()["errors"]
        assert [(e["field"], e["rule"]) for e in errors] == [expected[case]], (case, errors)
    assert accepted.status_code == 202
    records = await read_topic(stack.kafka, settings.topic_responses)
    assert [record.key for record in records] == [b"generic:after-the-hostile-ones"]


def jotform_fields() -> dict[str, str]:
    from services.intake.sources.jotform import form_fields

    return form_fields(jotform_delivery(jotform_body()))


async def test_receive_platform_field_names_and_grids_kept_storable(
    stack: Stack, settings: IntakeSettings
) -> None:
    fields = jotform_fields()
    raw = json.loads(fields["rawRequest"])
    extra = {
        "q20_1.Budget": "5",
        "q21_$ref": "x",
        "q22_grid": [["a", "b"], ["c"]],
        "q23_Budget\t(USD)": "7",
    }
    fields["rawRequest"] = json.dumps({**raw, **extra})
    async with serving(create_app(settings)) as client:
        answer = await client.post(
            f"/v1/webhooks/jotform/{SURVEY}?token={SECRETS['jotform']}",
            content=multipart(fields),
            headers={"content-type": JOTFORM_CONTENT_TYPE},
        )

    assert answer.status_code == 202, answer.text
    records = await read_topic(stack.kafka, settings.topic_responses)
    event = SurveyResponse.model_validate_json(records[0].value)
    assert (event.answers["1%2EBudget"], event.answers["%24ref"]) == ("5", "x")
    assert event.answers["grid"] == [{"0": "a", "1": "b"}, {"0": "c"}]
    assert event.answers["Budget%09(USD)"] == "7"
    # What analytics keeps of it is stored by the MongoDB-wire server as it is.
    client = mongo.new_client(stack.mongodb_url)
    try:
        store = AnalyticsStore(client[settings.mongodb_database])
        assert await store.record([Positioned(event, 0, 0)]) == [Positioned(event, 0, 0)]
        stored = list(await store.raw_responses())
    finally:
        await client.drop_database(settings.mongodb_database)
        await client.close()
    assert [response.answers for response in stored] == [event.answers]


async def test_receive_same_generic_id_in_two_surveys_counted_once_in_each(
    stack: Stack, settings: IntakeSettings, run_id: str
) -> None:
    first_survey, second_survey = SURVEY, OTHER_SURVEYS[0]
    later_survey = OTHER_SURVEYS[1]

    async def post(client: Any, survey: str, message_id: str) -> Any:
        body = json.dumps(canonical_response("shared-id", survey_id=survey)).encode()
        return await client.post(
            f"/v1/webhooks/generic/{survey}", content=body, headers=signed_headers(body, message_id)
        )

    async with serving(create_app(settings)) as client:
        first = await post(client, first_survey, "m1")
        second = await post(client, second_survey, "m2")
        again = await post(client, first_survey, "m3")
        published = await read_topic(stack.kafka, settings.topic_responses)
        # Kafka delivers at least once: a copy of the first event, read again by analytics.
        await produce(
            stack.kafka, settings.topic_responses, [(published[0].key, published[0].value)]
        )
        # Same key, so same partition, after the copy: once it is counted, so was the copy.
        later = await post(client, later_survey, "m4")

    assert [first.status_code, second.status_code, again.status_code, later.status_code] == [
        202,
        202,
        200,
        202,
    ]
    assert again.json()["status"] == "duplicate"
    analytics = settings_for(AnalyticsSettings, stack.environment(run_id))
    async with serving(create_analytics(analytics)) as client:

        async def total(survey: str) -> int:
            answer = await client.get(f"/v1/surveys/{survey}/summary", headers=OPERATOR)
            return int(answer.json().get("total", 0)) if answer.status_code == 200 else 0

        await eventually(lambda: total(later_survey), lambda count: count == 1, within=60)
        totals = [await total(survey) for survey in (first_survey, second_survey, later_survey)]
        overview = (await client.get("/v1/overview", headers=OPERATOR)).json()

    assert totals == [1, 1, 1]
    assert overview["total"] == 3


async def test_import_hostile_lines_reported_with_rule(
    stack: Stack, settings: IntakeSettings, tmp_path: Path
) -> None:
    lines = [
        canonical_response("import-ok"),
        canonical_response("import-nul", answers={"q\x00": 1}),
        canonical_response("import-future", submitted_at=future()),
        canonical_response("import-surrogate", answers={"q": "\udc80"}),
    ]
    file = tmp_path / "responses.jsonl"
    file.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    out = tmp_path / "invalid.jsonl"
    console = Console(record=True, width=200, force_terminal=False)
    args = argparse.Namespace(file=file, survey=SURVEY, source="generic", invalid_out=out)

    code = await import_file(settings, args, console)

    assert code == 0, console.export_text()
    reasons = {
        entry["record"]: [(e["field"], e["rule"]) for e in entry["errors"]]
        for entry in map(json.loads, out.read_text().splitlines())
    }
    assert reasons == {
        "line 2": [("answers.q\\u0000", "key-name")],
        "line 3": [("submitted_at", "date-window")],
        "line 4": [("answers.q", "unicode")],
    }
    records = await read_topic(stack.kafka, settings.topic_responses)
    assert [record.key for record in records] == [b"generic:import-ok"]
