"""services.intake.sources.typeform: signature check and `form_response` to canonical response."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.intake.sources import Rejected
from services.intake.sources.typeform import PLATFORM
from services.intake.surveys import SourceDefinition, SurveyDefinition
from shared.events import SurveyResponse
from tests.fixtures.platforms import json_delivery, typeform_event, typeform_signature, without_refs

SECRET = "typeform-secret-1"
RECEIVED_AT = datetime(2024, 5, 2, 10, 31, 2, tzinfo=UTC)
SURVEY = SurveyDefinition(
    id="cities-2024-priorities", title="t", sources={"typeform": SourceDefinition()}
)


def rejection(call, *args) -> Rejected:
    with pytest.raises(Rejected) as caught:
        call(*args)
    return caught.value


def adapt(event: dict, survey: SurveyDefinition = SURVEY) -> dict:
    return PLATFORM.adapt(json_delivery(event), survey, RECEIVED_AT)


def answer(event: dict, ref: str) -> dict:
    return next(a for a in event["form_response"]["answers"] if a["field"]["ref"] == ref)


# authenticate


def test_authenticate_signature_of_raw_body_accepted():
    body = json.dumps(typeform_event()).encode()
    delivery = json_delivery(body, {"typeform-signature": typeform_signature(body, SECRET)})

    assert PLATFORM.authenticate(delivery, ["rotated-out", SECRET]) is None


def test_authenticate_other_secret_rejected():
    body = b'{"event_type": "form_response"}'
    delivery = json_delivery(body, {"typeform-signature": typeform_signature(body, "other")})

    failure = rejection(PLATFORM.authenticate, delivery, [SECRET])

    assert (failure.status, failure.detail) == (401, "no signature matches a configured secret")


def test_authenticate_altered_body_rejected():
    signed = typeform_signature(b'{"a": 1}', SECRET)
    delivery = json_delivery(b'{"a": 2}', {"typeform-signature": signed})

    assert rejection(PLATFORM.authenticate, delivery, [SECRET]).status == 401


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ({}, "missing header: Typeform-Signature"),
        ({"typeform-signature": "md5=abc"}, "Typeform-Signature must start with 'sha256='"),
        ({"typeform-signature": "sha256=€€"}, "no signature matches a configured secret"),
    ],
)
def test_authenticate_missing_or_malformed_signature_rejected(header, detail):
    failure = rejection(PLATFORM.authenticate, json_delivery(b"{}", header), [SECRET])

    assert (failure.status, failure.detail) == (401, detail)


# adapt


def test_adapt_fixture_canonical_codes():
    response = SurveyResponse.model_validate(adapt(typeform_event()))

    assert response.response_id == "typeform:a3a12ec67a1365927098a606107fac15"
    assert response.submitted_at == datetime(2024, 5, 2, 10, 31, tzinfo=UTC)
    assert response.respondent.type == "local_government"
    assert response.respondent.country == "VN"
    assert response.development_priorities == ["sdg-11", "sdg-6"]
    assert response.capacity_needs == ["urban-planning", "digital-governance"]
    assert response.collaboration_interests == ["climate-resilience", "knowledge-exchange"]
    assert response.focal_point is not None
    assert response.focal_point.email == "an.nguyen@example.org"
    assert response.answers == {"comments": "We would welcome peer learning.", "readiness": 4}


def test_adapt_without_refs_joined_by_field_id():
    assert adapt(without_refs(typeform_event())) == adapt(typeform_event())


def test_adapt_unknown_field_id_kept_by_id():
    event = without_refs(typeform_event())
    event["form_response"]["answers"].append(
        {
            "type": "text",
            "text": "late question",
            "field": {"id": "NewField0001", "type": "short_text"},
        }
    )

    assert adapt(event)["answers"]["NewField0001"] == "late question"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Viet Nam", "VN"),
        ("Vietnam", "VN"),
        ("Türkiye", "TR"),
        ("Turkey", "TR"),
        ("Sri Lanka", "LK"),
        ("sri  lanka", "LK"),
        ("Indonesia", "ID"),
        ("Russia", "RU"),
        ("Côte d'Ivoire", "CI"),
        ("Bolivia", "BO"),
    ],
)
def test_adapt_country_names_iso_codes(name, code):
    event = typeform_event()
    answer(event, "country")["text"] = name

    assert adapt(event)["respondent"]["country"] == code


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("English", "en"),
        ("Français", "fr"),
        ("Español", "es"),
        ("العربية", "ar"),
        ("中文", "zh"),
        ("Русский", "ru"),
        ("FRANÇAIS", "fr"),
    ],
)
def test_adapt_language_names_codes(name, code):
    event = typeform_event()
    answer(event, "language")["text"] = name

    assert adapt(event)["focal_point"]["language"] == code


def test_adapt_labels_case_insensitive():
    event = typeform_event()
    answer(event, "priorities")["choices"]["labels"] = ["CLEAN WATER AND SANITATION", "sdg 13"]
    answer(event, "respondent_type")["choice"]["label"] = "national government OFFICIAL"

    adapted = adapt(event)

    assert adapted["development_priorities"] == ["sdg-6", "sdg-13"]
    assert adapted["respondent"]["type"] == "national_government"


def test_adapt_modality_label_as_interest():
    event = typeform_event()
    answer(event, "collaboration_interests")["choices"]["labels"] = [
        "Implementation and co-financing support to pilots"
    ]

    assert adapt(event)["collaboration_interests"] == ["pilot-cofinancing"]


def test_adapt_consent_false_drops_contact():
    event = typeform_event()
    answer(event, "consent")["boolean"] = False

    adapted = adapt(event)

    assert "focal_point" not in adapted
    assert "an.nguyen@example.org" not in json.dumps(adapted, default=str)


@pytest.mark.parametrize(
    ("ref", "change", "target", "message"),
    [
        (
            "respondent_type",
            {"choice": {"label": "Mayor"}},
            "respondent.type",
            "unknown respondent type 'Mayor'",
        ),
        ("country", {"text": "Atlantis"}, "respondent.country", "unknown country 'Atlantis'"),
        ("country", {"text": "Korea"}, "respondent.country", "unknown country 'Korea'"),
        (
            "priorities",
            {"choices": {"labels": ["World peace"]}},
            "development_priorities",
            "unknown SDG 'World peace'",
        ),
        (
            "capacity_needs",
            {"choices": {"labels": ["Rocketry"]}},
            "capacity_needs",
            "unknown theme 'Rocketry'",
        ),
        (
            "collaboration_interests",
            {"choices": {"labels": ["Sightseeing"]}},
            "collaboration_interests",
            "unknown theme or modality 'Sightseeing'",
        ),
        ("language", {"text": "Deutsch"}, "focal_point.language", "unknown language 'Deutsch'"),
        ("consent", {"boolean": "perhaps"}, "focal_point.consent", "expected yes or no"),
    ],
)
def test_adapt_unmappable_answer_rejected_422(ref, change, target, message):
    event = typeform_event()
    answer(event, ref).update(change)

    failure = rejection(adapt, event)

    assert failure.status == 422
    assert [error["field"] for error in failure.errors] == [target]
    assert failure.errors[0]["message"].startswith(f"{ref!r}: {message}")


def test_adapt_survey_labels_extend_vocabulary():
    survey = SurveyDefinition(
        id="cities-2024-priorities",
        title="t",
        sources={
            "typeform": SourceDefinition(mapping={"labels": {"Mayor's office": "local_government"}})
        },
    )
    event = typeform_event()
    answer(event, "respondent_type")["choice"]["label"] = "mayor's office"

    assert adapt(event, survey)["respondent"]["type"] == "local_government"


def test_adapt_other_event_type_rejected_422():
    failure = rejection(adapt, {**typeform_event(), "event_type": "form_response_partial"})

    assert (failure.status, failure.errors[0]["field"]) == (422, "event_type")


@pytest.mark.parametrize(
    "event",
    [
        {"event_type": "form_response"},
        {"event_type": "form_response", "form_response": []},
        {
            "event_type": "form_response",
            "form_response": {"token": "t", "submitted_at": "2024-05-02T10:31:00Z", "answers": {}},
        },
        {
            "event_type": "form_response",
            "form_response": {"token": "t", "submitted_at": "2024-05-02T10:31:00Z", "answers": [1]},
        },
    ],
)
def test_adapt_malformed_envelope_rejected_400(event):
    assert rejection(adapt, event).status == 400


@pytest.mark.parametrize(
    ("key", "field"), [("token", "response_id"), ("submitted_at", "submitted_at")]
)
def test_adapt_missing_id_or_time_rejected_422(key, field):
    event = typeform_event()
    del event["form_response"][key]

    failure = rejection(adapt, event)

    assert (failure.status, failure.errors[0]["field"]) == (422, field)
