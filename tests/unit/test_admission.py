"""services.intake.admission: what the intake admits, rule by rule, with the field path named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest

from services.intake.admission import (
    EARLIEST_SUBMISSION,
    INT64_MAX,
    INT64_MIN,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_KEY_LENGTH,
    MAX_LIST_LENGTH,
    MAX_OBJECT_LENGTH,
    MAX_REFUSALS,
    MAX_STRING_LENGTH,
    Admission,
    Refused,
    structure,
)
from shared.events import SurveyResponse

NOW = datetime(2024, 5, 2, 10, 31, 2, tzinfo=UTC)
ADMISSION = Admission()


def refusals(candidate: dict[str, Any], now: datetime = NOW) -> list[tuple[str, str]]:
    with pytest.raises(Refused) as caught:
        ADMISSION.admit(candidate, now)
    return [(refusal.field, refusal.rule) for refusal in caught.value.refusals]


def nested(levels: int, leaf: Any = 1) -> Any:
    """`levels` objects inside one another, `leaf` in the innermost."""
    value = leaf
    for _ in range(levels):
        value = {"sub": value}
    return value


def test_admit_design_example_unchanged(make_response):
    response = ADMISSION.admit(make_response(), NOW)

    # Admission changes nothing of a valid response: it equals the plain validation of it.
    assert response == SurveyResponse.model_validate(make_response())


def test_admit_nesting_at_limit_accepted(make_response):
    # The response is level 1 and `answers` level 2: MAX_DEPTH - 2 objects more reach the limit.
    response = ADMISSION.admit(make_response(answers={"q1": nested(MAX_DEPTH - 2)}), NOW)

    assert bson.encode(response.model_dump(mode="json"))
    assert json.loads(response.model_dump_json())["answers"]["q1"] == nested(MAX_DEPTH - 2)


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, 200, 256, 900])
def test_admit_nesting_over_limit_names_path_and_rule(make_response, levels):
    found = refusals(make_response(answers={"q1": nested(levels)}))

    assert found == [("answers.q1" + ".sub" * (MAX_DEPTH - 2), "max-depth")]


def test_admit_lists_and_objects_nested_over_limit_refused(make_response):
    deep: Any = 1
    for _ in range(150):
        deep = [{"a": deep}]

    assert refusals(make_response(answers={"q1": deep}))[0][1] == "max-depth"


def test_admit_list_in_list_refused(make_response):
    found = refusals(make_response(answers={"grid": [["a"], "b", []]}))

    assert found == [("answers.grid.0", "nested-list"), ("answers.grid.2", "nested-list")]


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("a\x00b", "a\\u0000b"),
        ("a\tb", "a\\u0009b"),
        ("line\n", "line\\u000a"),
        ("$where", "$where"),
        ("1. City?", "1. City?"),
        ("", ""),
        ("k" * (MAX_KEY_LENGTH + 1), "k" * 60 + "..."),
    ],
)
def test_admit_bad_key_names_field_and_rule(make_response, key, shown):
    found = refusals(make_response(answers={"q1": {key: "x"}}))

    assert found == [(f"answers.q1.{shown}", "key-name")]


def test_admit_dollar_inside_key_accepted(make_response):
    response = ADMISSION.admit(make_response(answers={"cost in $": 5}), NOW)

    assert response.answers["cost in $"] == 5


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("x" * (MAX_STRING_LENGTH + 1), "string-length"),
        (list(range(MAX_LIST_LENGTH + 1)), "list-length"),
        ({f"k{n}": n for n in range(MAX_OBJECT_LENGTH + 1)}, "object-length"),
        (INT64_MAX + 1, "int64-range"),
        (INT64_MIN - 1, "int64-range"),
        (10**40, "int64-range"),
        (float("nan"), "finite-number"),
        (float("inf"), "finite-number"),
        (float("-inf"), "finite-number"),
        ("broken \ud800 text", "unicode"),
    ],
)
def test_admit_out_of_bounds_value_names_field_and_rule(make_response, value, rule):
    assert refusals(make_response(answers={"q1": [{"v": value}]})) == [("answers.q1.0.v", rule)]


@pytest.mark.parametrize("value", [INT64_MAX, INT64_MIN, 1.5e308, True, None, "x" * 100])
def test_admit_values_within_bounds_accepted(make_response, value):
    response = ADMISSION.admit(make_response(answers={"q1": value}), NOW)

    assert bson.encode(response.model_dump(mode="json"))
    assert json.loads(response.model_dump_json())["answers"]["q1"] == value


def test_admit_surrogate_in_key_refused(make_response):
    assert refusals(make_response(answers={"\udc80": 1})) == [("answers.\\udc80", "unicode")]


def test_admit_answers_text_normalised_to_nfc(make_response):
    response = ADMISSION.admit(make_response(answers={"q1": ["Da\u0300 Na\u0306\u0303ng"]}), NOW)

    assert response.answers["q1"] == ["Dà Nẵng"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"respondent": {"city": "\u202eHanoi"}}, "respondent.city"),
        ({"respondent": {"organization": "Bank \u202dof\u202c Hanoi"}}, "respondent.organization"),
        (
            {"focal_point": {"name": "An \u2067Nguyen\u2069", "email": "a@example.org"}},
            "focal_point.name",
        ),
    ],
)
def test_admit_bidi_run_control_in_name_refused(make_response, overrides, field):
    assert refusals(make_response(**overrides)) == [(field, "bidi-control")]


def test_admit_bidi_marks_and_zero_width_in_name_stripped(make_response):
    response = ADMISSION.admit(
        make_response(
            respondent={"city": "\ufeffDa\u200b Nang\u200e", "organization": "القاهرة\u200f"},
            focal_point={"name": "An\u2060 Nguyen\u061c", "email": "a@example.org"},
        ),
        NOW,
    )

    assert response.respondent.city == "Da Nang"
    assert response.respondent.organization == "القاهرة"
    assert response.focal_point is not None
    assert response.focal_point.name == "An Nguyen"


def test_admit_bidi_in_free_answer_kept(make_response):
    # Free answers are data for analysis, never shown as a name: kept as written.
    response = ADMISSION.admit(make_response(answers={"q1": "a\u202eb"}), NOW)

    assert response.answers["q1"] == "a\u202eb"


@pytest.mark.parametrize(
    "submitted_at",
    [
        NOW + timedelta(minutes=5, seconds=1),
        NOW + timedelta(days=3650),
        EARLIEST_SUBMISSION - timedelta(seconds=1),
        datetime(1970, 1, 1, tzinfo=UTC),
    ],
)
def test_admit_submitted_at_outside_window_refused(make_response, submitted_at):
    candidate = make_response(submitted_at=submitted_at.isoformat())

    assert refusals(candidate) == [("submitted_at", "date-window")]


@pytest.mark.parametrize(
    "submitted_at", [NOW + timedelta(minutes=5), EARLIEST_SUBMISSION, NOW - timedelta(days=900)]
)
def test_admit_submitted_at_inside_window_accepted(make_response, submitted_at):
    response = ADMISSION.admit(make_response(submitted_at=submitted_at.isoformat()), NOW)

    assert response.submitted_at == submitted_at


def test_admit_future_tolerance_configurable(make_response):
    candidate = make_response(submitted_at=(NOW + timedelta(minutes=30)).isoformat())

    assert Admission(future_tolerance=timedelta(hours=1)).admit(candidate, NOW)
    with pytest.raises(Refused):
        Admission(future_tolerance=timedelta(0)).admit(candidate, NOW)


def test_admit_event_over_size_refused(make_response):
    answers = {f"q{n}": "x" * 9_000 for n in range(MAX_EVENT_BYTES // 9_000 + 1)}

    assert refusals(make_response(answers=answers)) == [("(body)", "event-size")]


def test_admit_model_errors_carry_rule(make_response):
    found = refusals(make_response(respondent={"country": "XX", "city": "c" * 121}))

    assert found == [
        ("respondent.country", "value-error"),
        ("respondent.city", "string-too-long"),
    ]


def test_admit_refusals_and_model_errors_together(make_response):
    found = refusals(make_response(respondent={"type": "mayor"}, answers={"a.b": 1}))

    assert set(found) == {("answers.a.b", "key-name"), ("respondent.type", "value-error")}


def test_admit_many_refusals_capped(make_response):
    answers = {f"k{n}.": n for n in range(200)}

    assert len(refusals(make_response(answers=answers))) == MAX_REFUSALS


def test_structure_leaves_candidate_unchanged(make_response):
    candidate = make_response(answers={"q1": "e\u0301"})

    found, normalised = structure(candidate)

    assert (found, normalised["answers"]["q1"], candidate["answers"]["q1"]) == ([], "é", "e\u0301")


@pytest.mark.parametrize("written", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_admit_submitted_at_without_utc_date_refused(make_response, written):
    assert refusals(make_response(submitted_at=written)) == [("submitted_at", "value-error")]
