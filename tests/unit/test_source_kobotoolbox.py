"""services.intake.sources.kobotoolbox: REST Service auth and submissions to canonical responses."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from services.intake.sources import Rejected
from services.intake.sources.kobotoolbox import PLATFORM
from services.intake.surveys import SourceDefinition, SurveyDefinition
from shared.events import SurveyResponse
from tests.fixtures.platforms import (
    json_delivery,
    kobo_edited_submission,
    kobo_submission,
    kobo_validation_statuses,
)

SECRET = "kobo-secret-1"
RECEIVED_AT = datetime(2024, 5, 2, 10, 31, 2, tzinfo=UTC)
SURVEY = SurveyDefinition(
    id="cities-2024-priorities", title="t", sources={"kobotoolbox": SourceDefinition()}
)


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def rejection(call, *args) -> Rejected:
    with pytest.raises(Rejected) as caught:
        call(*args)
    return caught.value


def adapt(submission: dict, survey: SurveyDefinition = SURVEY) -> dict:
    return PLATFORM.adapt(json_delivery(submission), survey, RECEIVED_AT)


# authenticate


@pytest.mark.parametrize("user", ["kobo", "", "ops@example.org"])
def test_authenticate_basic_auth_password_accepted_any_user(user):
    assert PLATFORM.authenticate(json_delivery({}, basic(user, SECRET)), [SECRET]) is None


def test_authenticate_token_header_accepted():
    delivery = json_delivery({}, {"x-webhook-token": SECRET})

    assert PLATFORM.authenticate(delivery, ["old", SECRET]) is None


def test_authenticate_wrong_password_rejected():
    failure = rejection(PLATFORM.authenticate, json_delivery({}, basic("kobo", "guess")), [SECRET])

    assert (failure.status, failure.detail) == (401, "the credentials match no configured secret")


def test_authenticate_wrong_token_rejected():
    delivery = json_delivery({}, {"x-webhook-token": SECRET + "x"})

    assert rejection(PLATFORM.authenticate, delivery, [SECRET]).status == 401


def test_authenticate_no_credentials_rejected():
    failure = rejection(PLATFORM.authenticate, json_delivery({}), [SECRET])

    assert failure.status == 401
    assert "X-Webhook-Token" in failure.detail


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()])
def test_authenticate_malformed_basic_auth_rejected(header):
    failure = rejection(
        PLATFORM.authenticate, json_delivery({}, {"authorization": header}), [SECRET]
    )

    assert (failure.status, failure.detail) == (
        401,
        "the Authorization header is not valid basic auth",
    )


def test_authenticate_empty_token_never_matches_empty_secret_list():
    delivery = json_delivery({}, {"x-webhook-token": ""})

    assert rejection(PLATFORM.authenticate, delivery, []).status == 401


# adapt


def test_adapt_fixture_canonical_codes():
    adapted = adapt(kobo_submission())

    response = SurveyResponse.model_validate(adapted)
    assert response.response_id == "kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998"
    assert response.source == "kobotoolbox"
    assert response.submitted_at == datetime(2024, 5, 2, 10, 31, tzinfo=UTC)
    assert response.received_at == RECEIVED_AT
    assert response.respondent.model_dump() == {
        "type": "local_government",
        "organization": "Da Nang People's Committee",
        "country": "VN",
        "city": "Đà Nẵng",
    }
    assert response.development_priorities == ["sdg-11", "sdg-6"]
    assert response.capacity_needs == ["urban-planning", "digital-governance"]
    assert response.collaboration_interests == ["climate-resilience", "knowledge-exchange"]
    assert response.focal_point is not None
    assert (response.focal_point.email, response.focal_point.language) == (
        "an.nguyen@example.org",
        "en",
    )


def test_adapt_unknown_fields_and_repeat_groups_kept_metadata_dropped():
    answers = adapt(kobo_submission())["answers"]

    assert answers == {
        "start": "2024-05-02T17:20:11.482+07:00",
        "end": "2024-05-02T17:30:58.104+07:00",
        "comments": "We would welcome peer learning on flood early warning.",
        "projects": [
            {"projects/name": "Coastal embankment", "projects/year": "2023"},
            {"projects/name": "Smart traffic lights", "projects/year": "2024"},
        ],
    }


def test_adapt_consent_no_drops_contact_details_everywhere():
    submission = {**kobo_submission(), "contact/consent": "no"}

    adapted = adapt(submission)

    assert "focal_point" not in adapted
    assert "an.nguyen@example.org" not in repr(adapted)
    assert "Nguyễn Văn An" not in repr(adapted)


def test_adapt_consent_missing_no_focal_point():
    submission = kobo_submission()
    del submission["contact/consent"]

    assert "focal_point" not in adapt(submission)


def test_adapt_submission_time_with_offset_converted_to_utc():
    submission = {**kobo_submission(), "_submission_time": "2024-05-02T17:31:00+07:00"}

    response = SurveyResponse.model_validate(adapt(submission))

    assert response.submitted_at == datetime(2024, 5, 2, 10, 31, tzinfo=UTC)


def test_adapt_instance_id_when_uuid_missing():
    submission = kobo_submission()
    del submission["_uuid"]

    assert adapt(submission)["response_id"] == "kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998"


def test_adapt_no_id_rejected_422():
    submission = kobo_submission()
    del submission["_uuid"], submission["meta/instanceID"]

    failure = rejection(adapt, submission)

    assert failure.status == 422
    assert failure.errors == [
        {
            "field": "response_id",
            "rule": "missing",
            "message": "'_uuid': expected the response's id",
        }
    ]


@pytest.mark.parametrize("time", [None, "yesterday", 1714645860])
def test_adapt_bad_submission_time_rejected_422(time):
    submission = {**kobo_submission(), "_submission_time": time}

    failure = rejection(adapt, submission)

    assert failure.status == 422
    assert failure.errors[0]["field"] == "submitted_at"


@pytest.mark.parametrize(
    ("field", "value", "target", "message"),
    [
        ("respondent/type", "mayor", "respondent.type", "unknown respondent type 'mayor'"),
        ("respondent/country", "xx", "respondent.country", "unknown country 'xx'"),
        ("priorities/sdgs", "sdg_11 sdg_99", "development_priorities", "unknown SDG 'sdg-99'"),
        ("needs/capacity", "urban_planning rockets", "capacity_needs", "unknown theme 'rockets'"),
        (
            "collaboration/interests",
            "sightseeing",
            "collaboration_interests",
            "unknown theme or modality 'sightseeing'",
        ),
        ("contact/consent", "maybe", "focal_point.consent", "expected yes or no, got 'maybe'"),
        ("contact/language", "de", "focal_point.language", "unknown language 'de'"),
        ("priorities/sdgs", ["sdg_11"], "development_priorities", "expected space-separated"),
    ],
)
def test_adapt_unmappable_value_rejected_422_naming_field_and_value(field, value, target, message):
    failure = rejection(adapt, {**kobo_submission(), field: value})

    assert (failure.status, failure.title) == (422, "Invalid response")
    assert [error["field"] for error in failure.errors] == [target]
    assert failure.errors[0]["message"].startswith(f"{field!r}: {message}")
    assert field in failure.detail


def test_adapt_every_unmappable_field_named_at_once():
    submission = {**kobo_submission(), "respondent/type": "mayor", "respondent/country": "zz"}

    failure = rejection(adapt, submission)

    assert [error["field"] for error in failure.errors] == ["respondent.type", "respondent.country"]


def test_adapt_survey_mapping_names_other_fields():
    survey = SurveyDefinition(
        id="cities-2025-water",
        title="Water",
        sources={
            "kobotoolbox": SourceDefinition(
                mapping={"city": "where/city", "development_priorities": "goals", "labels": {}}
            )
        },
    )
    submission = kobo_submission()
    submission["where/city"] = submission.pop("respondent/city")
    submission["goals"] = submission.pop("priorities/sdgs")

    adapted = adapt(submission, survey)

    assert adapted["respondent"]["city"] == "Đà Nẵng"
    assert adapted["development_priorities"] == ["sdg-11", "sdg-6"]
    assert adapted["survey_id"] == "cities-2025-water"
    assert "where/city" not in adapted["answers"]


def test_adapt_survey_labels_add_choice_names():
    survey = SurveyDefinition(
        id="cities-2024-priorities",
        title="t",
        sources={
            "kobotoolbox": SourceDefinition(
                mapping={"labels": {"municipality": "local_government"}}
            )
        },
    )

    adapted = adapt({**kobo_submission(), "respondent/type": "municipality"}, survey)

    assert adapted["respondent"]["type"] == "local_government"


@pytest.mark.parametrize("body", [b"[]", b"not json"])
def test_adapt_malformed_body_rejected_400(body):
    assert rejection(adapt, body).status == 400


# revisions and validation status


def test_adapt_unedited_submission_is_revision_1_without_review():
    response = SurveyResponse.model_validate(adapt(kobo_submission()))

    assert (response.response_id, response.revision, response.review) == (
        "kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998",
        1,
        None,
    )


def test_adapt_edited_submission_keeps_response_id_as_a_newer_revision():
    edited = SurveyResponse.model_validate(adapt(kobo_edited_submission()))

    assert edited.response_id == "kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998"
    # The edit's time (the form's `end`) in seconds: any later edit is a higher revision.
    assert edited.revision == int(datetime(2024, 5, 3, 2, 12, 40, tzinfo=UTC).timestamp())
    assert (edited.respondent.country, edited.respondent.city) == ("TH", "Bangkok")


def test_adapt_edited_submission_prefers_root_uuid_and_last_edited():
    submission = kobo_edited_submission() | {
        "meta/rootUuid": "uuid:11111111-2222-3333-4444-555555555555",
        "meta/deprecatedID": "uuid:99999999-2222-3333-4444-555555555555",
        "_last_edited": "2024-06-01T08:00:00",
    }
    edited = SurveyResponse.model_validate(adapt(submission))

    assert edited.response_id == "kobotoolbox:11111111-2222-3333-4444-555555555555"
    assert edited.revision == int(datetime(2024, 6, 1, 8, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("uid", "review"),
    [
        ("validation_status_approved", "approved"),
        ("validation_status_not_approved", "rejected"),
        ("validation_status_on_hold", "pending"),
    ],
)
def test_adapt_validation_status_becomes_review_on_arrival(uid, review):
    status = kobo_validation_statuses()[uid]
    response = SurveyResponse.model_validate(
        adapt(kobo_submission() | {"_validation_status": status})
    )

    assert response.review == review


@pytest.mark.parametrize("status", [{}, None, "", {"uid": "validation_status_unknown"}])
def test_adapt_no_validation_status_says_no_review(status):
    response = SurveyResponse.model_validate(
        adapt(kobo_submission() | {"_validation_status": status})
    )

    assert response.review is None
    assert "review" not in response.model_dump(mode="json")
