"""Properties of the platform adapters: any valid response, rendered as a platform would post it,
adapts back to the same codes; junk is never anything but `Rejected` (or a validation error)."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pycountry
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.intake.sources import Delivery, Rejected, platforms
from services.intake.surveys import SourceDefinition, SurveyDefinition
from shared.events import LANGUAGES, SurveyResponse
from shared.taxonomy import load_taxonomy
from tests.fixtures.platforms import (
    as_jotform,
    as_kobo,
    as_typeform,
    google_forms_body,
    jotform_body,
    jotform_delivery,
    json_delivery,
    kobo_submission,
    labelled_answers,
    multipart,
    typeform_event,
    without_refs,
)

RECEIVED_AT = datetime(2024, 5, 2, 10, 31, 2, tzinfo=UTC)
SURVEY = SurveyDefinition(
    id="cities-2024-priorities",
    title="t",
    sources={name: SourceDefinition() for name in platforms()},
)
TAXONOMY = load_taxonomy()
COUNTRIES = sorted((country.alpha_2, country.name) for country in pycountry.countries)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

free_text = (
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40)
    .map(lambda text: " ".join(text.split()))
    .filter(bool)
)


@st.composite
def canonical_responses(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid canonical response and the country's English name."""
    code, name = draw(st.sampled_from(COUNTRIES))
    response: dict[str, Any] = {
        "submitted_at": draw(
            st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))
        ).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "respondent": {
            "type": draw(st.sampled_from(sorted(TAXONOMY.respondent_types))),
            "organization": draw(st.none() | free_text),
            "country": code,
            "city": draw(free_text),
        },
        "development_priorities": draw(
            st.lists(st.sampled_from(sorted(TAXONOMY.sdgs)), unique=True)
        ),
        "capacity_needs": draw(st.lists(st.sampled_from(sorted(TAXONOMY.themes)), unique=True)),
        "collaboration_interests": draw(
            st.lists(st.sampled_from(sorted(TAXONOMY.interest_codes)), unique=True)
        ),
    }
    if draw(st.booleans()):
        response["focal_point"] = {
            "name": draw(free_text),
            "email": draw(st.sampled_from(["a@example.org", "focal.point@city.example.net"])),
            "language": draw(st.sampled_from(LANGUAGES)),
            "consent": True,
        }
    return response, name


def codes(event: SurveyResponse) -> dict[str, Any]:
    focal = event.focal_point
    return {
        "submitted_at": event.submitted_at,
        "type": event.respondent.type,
        "country": event.respondent.country,
        "city": event.respondent.city,
        "sdgs": event.development_priorities,
        "needs": event.capacity_needs,
        "interests": event.collaboration_interests,
        "focal_point": focal and (focal.name, focal.email, focal.language),
    }


def expected(response: dict[str, Any]) -> dict[str, Any]:
    return codes(
        SurveyResponse.model_validate(
            {
                **response,
                "response_id": "x",
                "survey_id": SURVEY.id,
                "source": "generic",
                "received_at": RECEIVED_AT,
            }
        )
    )


def adapted(source: str, delivery: Delivery) -> SurveyResponse:
    return SurveyResponse.model_validate(platforms()[source].adapt(delivery, SURVEY, RECEIVED_AT))


@PROPERTY
@given(canonical_responses())
def test_adapt_kobo_rendering_same_codes(drawn: tuple[dict[str, Any], str]) -> None:
    response, _ = drawn
    delivery = json_delivery(as_kobo(response, "0a4c5b7e-1f2d-4e3a-9b8c-7d6e5f4a3b2c"))

    assert codes(adapted("kobotoolbox", delivery)) == expected(response)


@PROPERTY
@given(canonical_responses(), st.booleans())
def test_adapt_typeform_rendering_same_codes(
    drawn: tuple[dict[str, Any], str], with_refs: bool
) -> None:
    response, country = drawn
    delivery = json_delivery(as_typeform(response, "tok123", country, with_refs=with_refs))

    assert codes(adapted("typeform", delivery)) == expected(response)


@PROPERTY
@given(canonical_responses())
def test_adapt_jotform_rendering_same_codes(drawn: tuple[dict[str, Any], str]) -> None:
    response, country = drawn
    delivery = jotform_delivery(as_jotform(response, "5912345678901234567", country))
    event = adapted("jotform", delivery)

    assert {**codes(event), "submitted_at": None} == {**expected(response), "submitted_at": None}


@PROPERTY
@given(canonical_responses())
def test_adapt_google_forms_rendering_same_codes(drawn: tuple[dict[str, Any], str]) -> None:
    response, country = drawn
    answers = labelled_answers(response, country)
    answers["consent"] = "Yes" if answers["consent"] else "No"
    body = {"response_id": "2_abc", "submitted_at": response["submitted_at"], "answers": answers}

    assert codes(adapted("google-forms", json_delivery(body))) == expected(response)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def only_rejected(source: str, delivery: Delivery) -> None:
    try:
        candidate = platforms()[source].adapt(delivery, SURVEY, RECEIVED_AT)
    except Rejected as rejected:
        assert rejected.status in (400, 422)
        return
    with contextlib.suppress(ValidationError):
        json.dumps(SurveyResponse.model_validate(candidate).model_dump(mode="json"))


@PROPERTY
@given(source=st.sampled_from(sorted(platforms())), body=st.binary(max_size=200))
def test_adapt_arbitrary_bytes_only_rejected(source: str, body: bytes) -> None:
    content_type = "multipart/form-data" if source == "jotform" else "application/json"
    delivery = Delivery({"content-type": f"{content_type}; boundary=xyz"}, {}, body, content_type)

    only_rejected(source, delivery)


@PROPERTY
@given(key=st.sampled_from(sorted(kobo_submission())), value=json_values)
def test_adapt_kobo_junk_field_only_rejected(key: str, value: Any) -> None:
    only_rejected("kobotoolbox", json_delivery({**kobo_submission(), key: value}))


@PROPERTY
@given(
    index=st.integers(0, 12),
    path=st.sampled_from(["choice", "choices", "text", "field", "type"]),
    value=json_values,
)
def test_adapt_typeform_junk_answer_only_rejected(index: int, path: str, value: Any) -> None:
    event = without_refs(typeform_event()) if index % 2 else typeform_event()
    event["form_response"]["answers"][index][path] = value

    only_rejected("typeform", json_delivery(event))


@PROPERTY
@given(
    key=st.sampled_from(
        [
            "q3_respondenttype",
            "q5_country",
            "q7_priorities",
            "q10_consent",
            "q11_contactname",
            "q13_language",
            "submitDate",
        ]
    ),
    value=json_values,
)
def test_adapt_jotform_junk_answer_only_rejected(key: str, value: Any) -> None:
    from services.intake.sources.jotform import form_fields

    fields = form_fields(jotform_delivery(jotform_body()))
    raw = json.loads(fields["rawRequest"])
    raw[key] = value
    fields["rawRequest"] = json.dumps(raw)

    only_rejected("jotform", jotform_delivery(multipart(fields)))


@PROPERTY
@given(key=st.sampled_from(sorted(google_forms_body()["answers"])), value=json_values)
def test_adapt_google_forms_junk_answer_only_rejected(key: str, value: Any) -> None:
    body = google_forms_body()
    body["answers"][key] = value
    body["answers"]["consent"] = "Yes"

    only_rejected("google-forms", json_delivery(body))


@pytest.mark.parametrize("source", sorted(platforms()))
def test_adapt_top_level_junk_only_rejected(source: str) -> None:
    for body in (b"null", b"[]", b"{}", b'{"answers": 1}', b'{"form_response": {"answers": 3}}'):
        only_rejected(source, json_delivery(body))
