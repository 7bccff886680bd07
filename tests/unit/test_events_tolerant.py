"""Reading events as a consumer: codes and fields newer than this service, schema versions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.events import SCHEMA_VERSION, TOLERANT, PilotAnnounced, SurveyResponse
from shared.kafka import INVALID, UNDECODABLE, Rejection, decode_event

NEW_CODES = {
    "respondent": {"type": "youth_council"},
    "development_priorities": ["sdg-18"],
    "capacity_needs": ["ocean-economy"],
    "collaboration_interests": ["ocean-economy", "peer-mentoring"],
}


def test_read_unknown_codes_of_every_vocabulary_kept(make_response: Any) -> None:
    response = SurveyResponse.model_validate(make_response(**NEW_CODES), context=TOLERANT)

    assert response.respondent.type == "youth_council"
    assert response.development_priorities == ["sdg-18"]
    assert response.capacity_needs == ["ocean-economy"]
    assert response.collaboration_interests == ["ocean-economy", "peer-mentoring"]


def test_validate_unknown_codes_still_refused_for_producers(make_response: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        SurveyResponse.model_validate(make_response(**NEW_CODES))

    assert {error["loc"] for error in caught.value.errors()} == {
        ("respondent", "type"),
        ("development_priorities", 0),
        ("capacity_needs", 0),
        ("collaboration_interests", 0),
        ("collaboration_interests", 1),
    }


@pytest.mark.parametrize(
    "code",
    ["Ocean-Economy", "ocean economy", "ocean.economy", "$where", "-ocean", "x" * 65, "", "é"],
)
def test_read_malformed_unknown_code_refused(make_response: Any, code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SurveyResponse.model_validate(make_response(capacity_needs=[code]), context=TOLERANT)

    assert caught.value.errors()[0]["loc"] == ("capacity_needs", 0)


def test_read_bounds_kept_for_unknown_codes(make_response: Any) -> None:
    codes = [f"new-theme-{n}" for n in range(41)]

    with pytest.raises(ValidationError) as caught:
        SurveyResponse.model_validate(make_response(capacity_needs=codes), context=TOLERANT)

    assert caught.value.errors()[0]["loc"] == ("capacity_needs",)


def test_read_pilot_with_new_theme_and_modality(make_pilot: Any) -> None:
    pilot = PilotAnnounced.model_validate(
        make_pilot(themes=["ocean-economy"], modalities=["peer-mentoring"]), context=TOLERANT
    )

    assert "ocean-economy" in pilot.codes
    assert pilot.modalities == ["peer-mentoring"]


def test_validate_schema_version_absent_is_one(make_response: Any) -> None:
    response = SurveyResponse.model_validate(make_response())

    assert response.schema_version == SCHEMA_VERSION == 1
    assert json.loads(response.model_dump_json())["schema_version"] == 1


def test_validate_newer_schema_version_refused_for_producers(make_response: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        SurveyResponse.model_validate(make_response(schema_version=2))

    assert caught.value.errors()[0]["loc"] == ("schema_version",)


def test_read_newer_schema_version_as_far_as_known(make_response: Any) -> None:
    data = make_response(schema_version=2, district="Hải Châu")
    data["answers"] = {"q1": "yes"}

    response = SurveyResponse.model_validate(data, context=TOLERANT)

    assert response.schema_version == 2
    assert response.answers == {"q1": "yes"}
    assert "district" not in response.model_dump()


@pytest.mark.parametrize("version", [0, -1, "two", 10**6])
def test_read_nonsense_schema_version_refused(make_response: Any, version: object) -> None:
    with pytest.raises(ValidationError):
        SurveyResponse.model_validate(make_response(schema_version=version), context=TOLERANT)


def test_decode_event_reads_tolerantly(make_response: Any) -> None:
    event = decode_event(SurveyResponse, json.dumps(make_response(**NEW_CODES)).encode())

    assert isinstance(event, SurveyResponse)
    assert event.capacity_needs == ["ocean-economy"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, UNDECODABLE),
        (b"", UNDECODABLE),
        (b"\xff\xfe\x00garbage", UNDECODABLE),
        (b'{"response_id": ', UNDECODABLE),
        (b"[1, 2]", INVALID),
        (b'{"response_id": "generic:r1"}', INVALID),
    ],
)
def test_decode_event_rejects_with_reason(value: bytes | None, reason: str) -> None:
    rejection = decode_event(SurveyResponse, value)

    assert isinstance(rejection, Rejection)
    assert rejection.reason == reason
    assert rejection.error


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_decode_event_never_raises(value: bytes) -> None:
    for model in (SurveyResponse, PilotAnnounced):
        assert isinstance(decode_event(model, value), model | Rejection)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    )
)
def test_decode_event_never_raises_on_any_answers(answers: Any) -> None:
    body = {
        "response_id": "generic:r1",
        "survey_id": "cities-2024-priorities",
        "source": "generic",
        "submitted_at": "2024-05-02T10:31:00Z",
        "received_at": "2024-05-02T10:31:00Z",
        "respondent": {"type": "cso", "country": "VN", "city": "Huế"},
        "answers": answers,
    }
    event = decode_event(SurveyResponse, json.dumps(body).encode())

    assert isinstance(event, SurveyResponse) == isinstance(answers, dict)
