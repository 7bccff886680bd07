"""services.intake.sources.jotform: token auth, multipart and urlencoded posts, `rawRequest`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from services.intake.sources import Delivery, Rejected
from services.intake.sources.jotform import PLATFORM, form_fields
from services.intake.surveys import SourceDefinition, SurveyDefinition
from shared.events import SurveyResponse
from tests.fixtures.platforms import jotform_body, jotform_delivery, multipart

SECRET = "jotform-fixture-secret"
RECEIVED_AT = datetime(2024, 5, 2, 10, 31, 2, tzinfo=UTC)
SURVEY = SurveyDefinition(
    id="cities-2024-priorities", title="t", sources={"jotform": SourceDefinition()}
)


def rejection(call, *args) -> Rejected:
    with pytest.raises(Rejected) as caught:
        call(*args)
    return caught.value


def fixture_fields() -> dict[str, str]:
    return form_fields(jotform_delivery(jotform_body()))


def with_raw(**changes) -> bytes:
    fields = fixture_fields()
    raw = json.loads(fields["rawRequest"])
    raw.update(changes)
    fields["rawRequest"] = json.dumps(raw)
    return multipart(fields)


def adapt(body: bytes, survey: SurveyDefinition = SURVEY) -> dict:
    return PLATFORM.adapt(jotform_delivery(body), survey, RECEIVED_AT)


# authenticate


def test_authenticate_query_token_accepted():
    assert PLATFORM.authenticate(jotform_delivery(b"", token=SECRET), [SECRET]) is None


def test_authenticate_bearer_token_accepted():
    delivery = Delivery({"authorization": f"Bearer {SECRET}"}, {}, b"", "multipart/form-data")

    assert PLATFORM.authenticate(delivery, ["old", SECRET]) is None


def test_authenticate_wrong_token_rejected():
    failure = rejection(PLATFORM.authenticate, jotform_delivery(b"", token="guess"), [SECRET])

    assert (failure.status, failure.detail) == (401, "the token matches no configured secret")
    assert "guess" not in failure.detail


def test_authenticate_no_token_rejected():
    failure = rejection(PLATFORM.authenticate, jotform_delivery(b""), [SECRET])

    assert failure.status == 401
    assert "token" in failure.detail


# adapt


def test_adapt_fixture_canonical_codes():
    response = SurveyResponse.model_validate(adapt(jotform_body()))

    assert response.response_id == "jotform:5912345678901234567"
    assert response.respondent.model_dump() == {
        "type": "national_government",
        "organization": "Urban Development Authority",
        "country": "LK",
        "city": "කොළඹ",
    }
    assert response.development_priorities == ["sdg-11", "sdg-13"]
    assert response.capacity_needs == ["disaster-risk-reduction"]
    assert response.collaboration_interests == ["disaster-risk-reduction", "expertise-exchange"]
    assert response.focal_point is not None
    assert response.focal_point.name == "Nimal Perera"
    assert response.answers == {"comments": "Monsoon flooding is our first concern."}


def test_adapt_webhook_url_secret_never_in_event():
    adapted = adapt(jotform_body())

    assert "jotform-fixture-secret" not in json.dumps(adapted, default=str)
    assert "webhookURL" not in json.dumps(adapted, default=str)


def test_adapt_urlencoded_post_same_as_multipart():
    body = urlencode(fixture_fields()).encode()
    delivery = Delivery(
        {"content-type": "application/x-www-form-urlencoded"},
        {},
        body,
        "application/x-www-form-urlencoded",
    )

    assert PLATFORM.adapt(delivery, SURVEY, RECEIVED_AT) == adapt(jotform_body())


def test_adapt_question_numbers_ignored():
    fields = fixture_fields()
    raw = json.loads(fields["rawRequest"])
    raw = {key.replace("q5_", "q42_"): value for key, value in raw.items()}
    fields["rawRequest"] = json.dumps(raw)

    assert adapt(multipart(fields))["respondent"]["country"] == "LK"


def test_adapt_submit_date_used_when_present():
    adapted = adapt(with_raw(submitDate="1714645860000"))

    assert adapted["submitted_at"] == datetime(2024, 5, 2, 10, 31, tzinfo=UTC)


def test_adapt_no_submit_date_received_at():
    assert adapt(jotform_body())["submitted_at"] == RECEIVED_AT


@pytest.mark.parametrize("submit_date", ["999999999999999", 999999999999999, "9" * 40])
def test_adapt_submit_date_beyond_calendar_rejected_422(submit_date):
    failure = rejection(adapt, with_raw(submitDate=submit_date))

    assert failure.status == 422
    assert [(e["field"], e["rule"]) for e in failure.errors] == [("submitted_at", "date-window")]


@pytest.mark.parametrize("submit_date", ["\u00b2", "\u0661\u0662", "", "-5", True, 1.5, None])
def test_adapt_submit_date_not_digits_received_at(submit_date):
    assert adapt(with_raw(submitDate=submit_date))["submitted_at"] == RECEIVED_AT


def test_adapt_unknown_charset_read_as_utf8():
    body = jotform_body().replace(
        b'name="formTitle"', b'name="formTitle"\r\nContent-Type: text/plain; charset=x-nonesuch'
    )

    assert adapt(body)["response_id"] == "jotform:5912345678901234567"


def test_adapt_huge_integer_in_raw_request_rejected_400():
    fields = fixture_fields()
    fields["rawRequest"] = '{"q6_city": ' + "1" * 5000 + "}"

    assert rejection(adapt, multipart(fields)).status == 400


def test_adapt_answer_keys_escaped_reversibly():
    adapted = adapt(with_raw(**{"q20_a.b": "x", "q21_$c": "y", "q22_50%": "z"}))

    assert {k: adapted["answers"][k] for k in ("a%2Eb", "%24c", "50%25")} == {
        "a%2Eb": "x",
        "%24c": "y",
        "50%25": "z",
    }


def test_adapt_consent_no_drops_contact():
    adapted = adapt(with_raw(q10_consent="No"))

    assert "focal_point" not in adapted
    assert "Perera" not in json.dumps(adapted, default=str)


@pytest.mark.parametrize(
    ("key", "value", "target", "message"),
    [
        (
            "q3_respondenttype",
            "Mayor",
            "respondent.type",
            "'respondenttype': unknown respondent type",
        ),
        ("q5_country", "Narnia", "respondent.country", "'country': unknown country 'Narnia'"),
        (
            "q7_priorities",
            ["SDG 18"],
            "development_priorities",
            "'priorities': unknown SDG 'SDG 18'",
        ),
        ("q8_capacityneeds", ["Magic"], "capacity_needs", "'capacityneeds': unknown theme 'Magic'"),
        ("q13_language", "Klingon", "focal_point.language", "'language': unknown language"),
        ("q10_consent", "Perhaps", "focal_point.consent", "'consent': expected yes or no"),
    ],
)
def test_adapt_unmappable_answer_rejected_422(key, value, target, message):
    failure = rejection(adapt, with_raw(**{key: value}))

    assert failure.status == 422
    assert [error["field"] for error in failure.errors] == [target]
    assert failure.errors[0]["message"].startswith(message)


def test_adapt_survey_mapping_other_names():
    survey = SurveyDefinition(
        id="cities-2024-priorities",
        title="t",
        sources={"jotform": SourceDefinition(mapping={"country": "nation"})},
    )
    fields = fixture_fields()
    raw = json.loads(fields["rawRequest"])
    raw["q5_nation"] = raw.pop("q5_country")
    fields["rawRequest"] = json.dumps(raw)

    assert adapt(multipart(fields), survey)["respondent"]["country"] == "LK"


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"submissionID": "1"}, "the form has no `rawRequest` field"),
        ({"submissionID": "1", "rawRequest": "{oops"}, "`rawRequest` is not valid JSON"),
        ({"submissionID": "1", "rawRequest": "[1]"}, "`rawRequest` must be a JSON object"),
    ],
)
def test_adapt_bad_raw_request_rejected_400(fields, detail):
    failure = rejection(adapt, multipart(fields))

    assert failure.status == 400
    assert failure.detail.startswith(detail)


def test_adapt_missing_submission_id_rejected_422():
    failure = rejection(adapt, multipart({"rawRequest": "{}"}))

    assert (failure.status, failure.errors[0]["field"]) == (422, "response_id")


def test_adapt_not_multipart_rejected_400():
    delivery = Delivery({"content-type": "multipart/form-data"}, {}, b"junk", "multipart/form-data")

    assert rejection(PLATFORM.adapt, delivery, SURVEY, RECEIVED_AT).status == 400
