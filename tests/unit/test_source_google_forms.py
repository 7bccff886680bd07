"""services.intake.sources.google_forms: the Apps Script bridge's JSON with a bearer token."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.intake.sources import Rejected
from services.intake.sources.google_forms import PLATFORM
from services.intake.surveys import SourceDefinition, SurveyDefinition
from shared.events import SurveyResponse
from tests.fixtures.platforms import google_forms_body, json_delivery

SECRET = "bridge-secret-1"
RECEIVED_AT = datetime(2024, 5, 2, 10, 31, 2, tzinfo=UTC)
SURVEY = SurveyDefinition(
    id="cities-2024-priorities", title="t", sources={"google-forms": SourceDefinition()}
)


def rejection(call, *args) -> Rejected:
    with pytest.raises(Rejected) as caught:
        call(*args)
    return caught.value


def adapt(body: dict) -> dict:
    return PLATFORM.adapt(json_delivery(body), SURVEY, RECEIVED_AT)


def with_answers(**answers) -> dict:
    body = google_forms_body()
    body["answers"].update(answers)
    return body


def test_authenticate_bearer_accepted():
    delivery = json_delivery({}, {"authorization": f"Bearer {SECRET}"})

    assert PLATFORM.authenticate(delivery, [SECRET]) is None


@pytest.mark.parametrize(
    "headers", [{}, {"authorization": "Bearer nope"}, {"authorization": f"Basic {SECRET}"}]
)
def test_authenticate_missing_or_wrong_token_rejected(headers):
    assert rejection(PLATFORM.authenticate, json_delivery({}, headers), [SECRET]).status == 401


def test_adapt_fixture_canonical_codes_without_consent():
    response = SurveyResponse.model_validate(adapt(google_forms_body()))

    assert response.response_id == "google-forms:2_ABaOnudE8yS5vZl3kxR1pQ7tWm"
    assert response.respondent.type == "cso"
    assert response.respondent.country == "TR"
    assert response.respondent.city == "İstanbul"
    assert response.development_priorities == ["sdg-5", "sdg-10"]
    assert response.capacity_needs == ["gender-inclusion"]
    assert response.collaboration_interests == ["city-twinning", "knowledge-exchange"]
    assert response.focal_point is None
    assert response.answers == {"comments": "Interested in women-led cooperatives."}


def test_adapt_consent_yes_focal_point_in_language():
    focal = adapt(with_answers(consent="Yes"))["focal_point"]

    assert focal == {
        "name": "Ayşe Yılmaz",
        "email": "ayse.yilmaz@example.org",
        "language": "fr",
        "consent": True,
    }


def test_adapt_unknown_country_rejected_422():
    failure = rejection(adapt, with_answers(country="Ruritania"))

    assert failure.errors == [
        {
            "field": "respondent.country",
            "rule": "mapping",
            "message": "'country': unknown country 'Ruritania'",
        }
    ]


@pytest.mark.parametrize(
    ("body", "status"),
    [({"response_id": "r", "submitted_at": "2024-05-02T10:31:00Z"}, 400), ({"answers": {}}, 422)],
)
def test_adapt_incomplete_body_rejected(body, status):
    assert rejection(adapt, body).status == status


def test_adapt_question_titles_with_dots_kept_escaped():
    adapted = adapt(with_answers(**{"1. Budget in $?": "5", "$ref": "x", "q.a": {"b.c": 1}}))

    assert {k: adapted["answers"][k] for k in ("1%2E Budget in $?", "%24ref", "q%2Ea")} == {
        "1%2E Budget in $?": "5",
        "%24ref": "x",
        "q%2Ea": {"b%2Ec": 1},
    }


def test_adapt_checkbox_grid_rows_kept_by_position():
    grid = [["Water", "Housing"], None, ["Transport"]]

    adapted = adapt(with_answers(**{"Needs by year": grid}))

    assert adapted["answers"]["Needs by year"] == [
        {"0": "Water", "1": "Housing"},
        None,
        {"0": "Transport"},
    ]
