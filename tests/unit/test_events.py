"""shared.events: the two event contracts, their normalisation and their bounds."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from shared.events import PilotAnnounced, SurveyResponse


def errors_of(model: type, data: dict) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [(error["loc"], error["msg"]) for error in caught.value.errors()]


# survey.responses.v1


def test_validate_design_example_serialises_back_unchanged(make_response):
    response = SurveyResponse.model_validate(make_response())

    # The event carries the schema version its producer wrote (DESIGN's example predates it).
    assert response.model_dump(mode="json") == {**make_response(), "schema_version": 1}


def test_validate_json_round_trip_equal(make_event):
    response = make_event()

    assert SurveyResponse.model_validate_json(response.model_dump_json()) == response


def test_validate_submitted_at_offset_converted_to_utc(make_response):
    response = SurveyResponse.model_validate(
        make_response(submitted_at="2024-05-02T12:31:00+02:00")
    )

    assert response.submitted_at == datetime(2024, 5, 2, 10, 31, tzinfo=UTC)
    assert response.submitted_at.utcoffset().total_seconds() == 0
    assert response.model_dump(mode="json")["submitted_at"] == "2024-05-02T10:31:00Z"


def test_serialise_received_at_with_z(make_response):
    response = SurveyResponse.model_validate(
        make_response(received_at=datetime(2024, 5, 2, 5, 31, 2, tzinfo=UTC))
    )

    assert response.model_dump(mode="json")["received_at"] == "2024-05-02T05:31:02Z"
    assert '"received_at":"2024-05-02T05:31:02Z"' in response.model_dump_json()


def test_validate_naive_submitted_at_rejected(make_response):
    errors = errors_of(SurveyResponse, make_response(submitted_at="2024-05-02T10:31:00"))

    assert errors == [(("submitted_at",), "Input should have timezone info")]


@pytest.mark.parametrize(
    ("field", "codes", "message"),
    [
        ("development_priorities", ["sdg-11", "sdg-18"], "'sdg-18' is not a known SDG code"),
        ("capacity_needs", ["housing", "teleport"], "'teleport' is not a known theme code"),
        ("capacity_needs", ["urban-planning", "advisory"], "'advisory' is not a known theme code"),
        (
            "collaboration_interests",
            ["climate-resilience", "sdg-6"],
            "'sdg-6' is not a known theme or modality code",
        ),
    ],
)
def test_validate_unknown_code_names_field_and_index(make_response, field, codes, message):
    errors = errors_of(SurveyResponse, make_response(**{field: codes}))

    assert errors == [((field, 1), f"Value error, {message}")]


def test_validate_unknown_respondent_type_names_field(make_response):
    errors = errors_of(SurveyResponse, make_response(respondent={"type": "mayor"}))

    assert errors == [
        (("respondent", "type"), "Value error, 'mayor' is not a known respondent type code")
    ]


def test_validate_interests_accept_theme_and_modality(make_response):
    response = SurveyResponse.model_validate(
        make_response(collaboration_interests=["housing", "city-twinning"])
    )

    assert response.collaboration_interests == ["housing", "city-twinning"]


def test_validate_duplicate_codes_removed_in_order(make_response):
    response = SurveyResponse.model_validate(
        make_response(
            development_priorities=["sdg-11", "sdg-6", "sdg-11", "sdg-1", "sdg-6"],
            capacity_needs=["housing", "urban-planning", "housing"],
            collaboration_interests=["advisory", "advisory", "housing"],
        )
    )

    assert response.development_priorities == ["sdg-11", "sdg-6", "sdg-1"]
    assert response.capacity_needs == ["housing", "urban-planning"]
    assert response.collaboration_interests == ["advisory", "housing"]


@pytest.mark.parametrize("country", ["vn", "Vn", " vn "])
def test_validate_country_normalised_to_upper_case(make_response, country):
    response = SurveyResponse.model_validate(make_response(respondent={"country": country}))

    assert response.respondent.country == "VN"


@pytest.mark.parametrize("country", ["XX", "VNM", "", "Viet Nam"])
def test_validate_invalid_country_names_field(make_response, country):
    errors = errors_of(SurveyResponse, make_response(respondent={"country": country}))

    assert [loc for loc, _ in errors] == [("respondent", "country")]


def test_validate_city_nfc_and_whitespace_normalised(make_response):
    decomposed = unicodedata.normalize("NFD", "  Đà \t Nẵng\n ")
    assert decomposed.strip() != "Đà Nẵng"  # the input really is decomposed

    response = SurveyResponse.model_validate(make_response(respondent={"city": decomposed}))

    assert response.respondent.city == "Đà Nẵng"
    assert response.respondent.city == unicodedata.normalize("NFC", "Đà Nẵng")


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("Da\u200bNang", "DaNang"),  # zero-width space
        ("\ufeffHanoi\u2060", "Hanoi"),  # BOM, word joiner
        ("Pay\u200dpal Pay\u200cpal", "Paypal Paypal"),  # joiners between Latin letters hide
        ("القاهرة\u200f", "القاهرة"),  # RLM
        ("Cairo\u200e \u061cx", "Cairo x"),  # LRM, ALM
        ("soft\u00adhyphen", "softhyphen"),
        ("\u202eHanoi\u202c", "Hanoi"),  # an override read from an older event: stripped
        ("a\u2066b\u2069", "ab"),  # isolates
    ],
)
def test_validate_name_invisible_characters_stripped(make_response, written, kept):
    response = SurveyResponse.model_validate(
        make_response(
            respondent={"city": written, "organization": written},
            focal_point={"name": written},
        )
    )

    assert response.respondent.city == kept
    assert response.respondent.organization == kept
    assert response.focal_point is not None
    assert response.focal_point.name == kept


@pytest.mark.parametrize(
    "name",
    [
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian ZWNJ inside a word
        "\u0646\u0627\u0645\u0647\u200c\u0647\u0627",  # Persian plural suffix after ZWNJ
        "\u0915\u094d\u200d\u0937",  # Devanagari half-form: ZWJ after a virama
        "\u0d28\u0d4d\u200d",  # Malayalam chillu: ZWJ after a virama at a word's end
    ],
)
def test_validate_name_joiners_of_joining_scripts_kept(make_response, name):
    response = SurveyResponse.model_validate(make_response(focal_point={"name": name}))

    assert response.focal_point is not None
    assert response.focal_point.name == name


def test_validate_pilot_title_invisible_characters_stripped(make_pilot):
    pilot = PilotAnnounced.model_validate(make_pilot(title="Flood\u200b early \u202ewarning"))

    assert pilot.title == "Flood early warning"


def test_validate_pilot_title_surrogate_rejected(make_pilot):
    errors = errors_of(PilotAnnounced, make_pilot(title="Flood \ud800"))

    assert errors == [(("title",), "Value error, unpaired surrogates are not allowed")]


def test_identity_is_survey_and_response_id(make_event):
    event = make_event(response_id="generic:r-1", survey_id="cities-2024-capacity")

    assert event.identity == "cities-2024-capacity/generic:r-1"


def test_validate_organization_whitespace_collapsed(make_response):
    response = SurveyResponse.model_validate(
        make_response(respondent={"organization": " Da  Nang\nPeople's   Committee "})
    )

    assert response.respondent.organization == "Da Nang People's Committee"


def test_validate_organization_missing_is_none(make_response):
    data = make_response()
    del data["respondent"]["organization"]

    assert SurveyResponse.model_validate(data).respondent.organization is None


def test_validate_blank_city_rejected(make_response):
    errors = errors_of(SurveyResponse, make_response(respondent={"city": " \t "}))

    assert errors == [(("respondent", "city"), "String should have at least 1 character")]


def test_validate_city_length_bounded(make_response):
    SurveyResponse.model_validate(make_response(respondent={"city": "x" * 120}))

    errors = errors_of(SurveyResponse, make_response(respondent={"city": "x" * 121}))

    assert errors == [(("respondent", "city"), "String should have at most 120 characters")]


def test_validate_focal_point_optional(make_response):
    response = SurveyResponse.model_validate(make_response(focal_point=None))

    assert response.focal_point is None


def test_validate_focal_point_without_consent_is_a_withdrawal(make_response):
    # Contract change: `consent: false` carries a withdrawal to the notifier (it stops all mail);
    # a focal point counts only with consent.
    response = SurveyResponse.model_validate(make_response(focal_point={"consent": False}))

    assert response.focal_point is not None
    assert response.focal_point.consent is False
    assert response.consenting_focal_point is None


def test_validate_focal_point_with_consent_counts(make_response):
    response = SurveyResponse.model_validate(make_response())

    assert response.consenting_focal_point == response.focal_point


def test_validate_focal_point_consent_required(make_response):
    data = make_response()
    del data["focal_point"]["consent"]

    errors = errors_of(SurveyResponse, data)

    assert errors == [(("focal_point", "consent"), "Field required")]


def test_validate_focal_point_language_defaults_to_english(make_response):
    data = make_response()
    del data["focal_point"]["language"]

    assert SurveyResponse.model_validate(data).focal_point.language == "en"


def test_validate_focal_point_unknown_language_rejected(make_response):
    errors = errors_of(SurveyResponse, make_response(focal_point={"language": "de"}))

    assert [loc for loc, _ in errors] == [("focal_point", "language")]


def test_validate_focal_point_bad_email_rejected(make_response):
    errors = errors_of(SurveyResponse, make_response(focal_point={"email": "not-an-address"}))

    assert [loc for loc, _ in errors] == [("focal_point", "email")]


def test_validate_unknown_source_rejected(make_response):
    errors = errors_of(SurveyResponse, make_response(source="surveymonkey"))

    assert [loc for loc, _ in errors] == [("source",)]


@pytest.mark.parametrize("survey_id", ["Cities-2024", "c", "-cities", "cities_2024", "x" * 65])
def test_validate_bad_survey_id_rejected(make_response, survey_id):
    errors = errors_of(SurveyResponse, make_response(survey_id=survey_id))

    assert [loc for loc, _ in errors] == [("survey_id",)]


@pytest.mark.parametrize("response_id", ["", "has space", "semi;colon", "x" * 201])
def test_validate_bad_response_id_rejected(make_response, response_id):
    errors = errors_of(SurveyResponse, make_response(response_id=response_id))

    assert [loc for loc, _ in errors] == [("response_id",)]


def test_validate_response_id_at_limit_accepted(make_response):
    response = SurveyResponse.model_validate(make_response(response_id="g:" + "x" * 198))

    assert len(response.response_id) == 200


@pytest.mark.parametrize(
    ("field", "values", "limit"),
    [
        ("development_priorities", ["sdg-1"] * 18, 17),
        ("capacity_needs", ["housing"] * 41, 40),
        ("collaboration_interests", ["housing"] * 41, 40),
    ],
)
def test_validate_code_lists_bounded(make_response, field, values, limit):
    errors = errors_of(SurveyResponse, make_response(**{field: values}))

    assert errors == [
        ((field,), f"List should have at most {limit} items after validation, not {limit + 1}")
    ]


def test_validate_answers_bounded(make_response):
    data = make_response()
    data["answers"] = {f"q{i}": i for i in range(200)}
    SurveyResponse.model_validate(data)
    data["answers"]["q200"] = 200

    errors = errors_of(SurveyResponse, data)

    assert errors == [
        (("answers",), "Dictionary should have at most 200 items after validation, not more")
    ]


def test_validate_unknown_field_ignored(make_response):
    response = SurveyResponse.model_validate(make_response(district="Hải Châu"))

    assert "district" not in response.model_dump()


def test_validate_several_errors_each_named(make_response):
    data = make_response(
        respondent={"country": "XX", "type": "mayor"}, development_priorities=["sdg-0"]
    )

    errors = errors_of(SurveyResponse, data)

    assert sorted(loc for loc, _ in errors) == [
        ("development_priorities", 0),
        ("respondent", "country"),
        ("respondent", "type"),
    ]


def test_assign_field_refused_event_frozen(make_event):
    response = make_event()

    with pytest.raises(ValidationError):
        response.survey_id = "other-survey"


# pilots.announced.v1


def test_validate_pilot_design_example_serialises_back_unchanged(make_pilot):
    pilot = PilotAnnounced.model_validate(make_pilot())

    assert pilot.model_dump(mode="json") == {**make_pilot(), "schema_version": 1}


def test_validate_pilot_countries_normalised_and_deduplicated(make_pilot):
    pilot = PilotAnnounced.model_validate(make_pilot(eligible_countries=["vn", "ID", "VN", "lk"]))

    assert pilot.eligible_countries == ["VN", "ID", "LK"]


def test_validate_pilot_unknown_modality_names_field(make_pilot):
    errors = errors_of(PilotAnnounced, make_pilot(modalities=["pilot-cofinancing", "housing"]))

    assert errors == [(("modalities", 1), "Value error, 'housing' is not a known modality code")]


def test_validate_pilot_unknown_theme_names_field(make_pilot):
    errors = errors_of(PilotAnnounced, make_pilot(themes=["sdg-13"]))

    assert errors == [(("themes", 0), "Value error, 'sdg-13' is not a known theme code")]


def test_validate_pilot_invalid_country_names_field(make_pilot):
    errors = errors_of(PilotAnnounced, make_pilot(eligible_countries=["VN", "ZZ"]))

    assert [loc for loc, _ in errors] == [("eligible_countries", 1)]


def test_validate_pilot_title_normalised(make_pilot):
    pilot = PilotAnnounced.model_validate(
        make_pilot(title=unicodedata.normalize("NFD", " Cấp  nước\nsạch "))
    )

    assert pilot.title == "Cấp nước sạch"


def test_validate_pilot_bad_url_rejected(make_pilot):
    errors = errors_of(PilotAnnounced, make_pilot(url="not a url"))

    assert [loc for loc, _ in errors] == [("url",)]


def test_validate_pilot_summary_bounded(make_pilot):
    errors = errors_of(PilotAnnounced, make_pilot(summary="x" * 5001))

    assert errors == [(("summary",), "String should have at most 5000 characters")]


def test_codes_union_of_themes_and_sdgs(make_pilot_event):
    pilot = make_pilot_event()

    assert pilot.codes == frozenset({"climate-resilience", "disaster-risk-reduction", "sdg-13"})


@pytest.mark.parametrize(
    ("today", "expected"),
    [(date(2025, 3, 30), True), (date(2025, 3, 31), True), (date(2025, 4, 1), False)],
)
def test_is_open_until_apply_by_inclusive(make_pilot_event, today, expected):
    assert make_pilot_event().is_open(today) is expected


def test_is_open_without_deadline_always(make_pilot_event):
    assert make_pilot_event(apply_by=None).is_open(date(2999, 1, 1)) is True
