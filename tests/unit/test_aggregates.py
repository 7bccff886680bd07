"""services.analytics.aggregates: counter paths, increments per document, summary shapes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from services.analytics.aggregates import (
    OVERALL,
    Positioned,
    city_key,
    decode_key,
    document_increments,
    encode_key,
    increments,
    overall_from_surveys,
    response_paths,
    summary,
    survey_key,
    survey_of,
)


def as_document(counter: Counter[str]) -> dict[str, Any]:
    """What MongoDB holds after `$inc` of these dotted paths on an empty document."""
    document: dict[str, Any] = {}
    for path, n in counter.items():
        *parents, leaf = path.split(".")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = node.get(leaf, 0) + n
    return document


def test_survey_key_prefixed():
    assert survey_key("cities-2024-priorities") == "survey:cities-2024-priorities"


def test_response_paths_design_example(make_event):
    assert response_paths(make_event()) == [
        "total",
        "by_respondent_type.local_government",
        "by_country.VN",
        "by_city.VN|Đà Nẵng",
        "development_priorities.sdg-11",
        "development_priorities.sdg-6",
        "capacity_needs.urban-planning",
        "capacity_needs.digital-governance",
        "collaboration_interests.climate-resilience",
        "collaboration_interests.knowledge-exchange",
        "by_day.2024-05-02",
        "country_priorities.VN.sdg-11",
        "country_priorities.VN.sdg-6",
        "type_themes.local_government.urban-planning",
        "type_themes.local_government.digital-governance",
        "type_themes.local_government.climate-resilience",
    ]


def test_response_paths_theme_in_needs_and_interests_counted_once(make_event):
    response = make_event(
        capacity_needs=["housing"], collaboration_interests=["housing", "advisory"]
    )

    type_themes = [p for p in response_paths(response) if p.startswith("type_themes.")]

    assert type_themes == ["type_themes.local_government.housing"]


def test_response_paths_minimal_response(make_event):
    response = make_event(development_priorities=[], capacity_needs=[], collaboration_interests=[])

    assert response_paths(response) == [
        "total",
        "by_respondent_type.local_government",
        "by_country.VN",
        "by_city.VN|Đà Nẵng",
        "by_day.2024-05-02",
    ]


def test_response_paths_day_is_utc_date(make_event):
    response = make_event(submitted_at="2024-05-02T21:30:00-05:00")

    assert "by_day.2024-05-03" in response_paths(response)


def test_response_paths_city_with_dot_encoded(make_event):
    response = make_event(respondent={"country": "RU", "city": "St. Petersburg"})

    paths = response_paths(response)

    assert "by_city.RU|St%2E Petersburg" in paths
    assert all(p.count(".") <= 2 for p in paths)


def test_increments_survey_and_overall_documents(make_event):
    responses = [
        make_event(response_id="generic:1"),
        make_event(response_id="generic:2", respondent={"country": "ID", "city": "Surabaya"}),
        make_event(
            response_id="generic:3",
            survey_id="cities-2024-capacity",
            development_priorities=["sdg-6"],
        ),
    ]

    documents = increments(responses)

    assert set(documents) == {
        "survey:cities-2024-priorities",
        "survey:cities-2024-capacity",
        OVERALL,
    }
    priorities = documents["survey:cities-2024-priorities"]
    overall = documents[OVERALL]
    assert priorities["total"] == 2
    assert priorities["by_country.VN"] == 1
    assert priorities["by_country.ID"] == 1
    assert priorities["development_priorities.sdg-6"] == 2
    assert documents["survey:cities-2024-capacity"]["total"] == 1
    assert overall["total"] == 3
    assert overall["by_city.VN|Đà Nẵng"] == 2
    assert overall["development_priorities.sdg-6"] == 3
    assert overall["development_priorities.sdg-11"] == 2
    assert overall["surveys.cities-2024-priorities"] == 2
    assert overall["surveys.cities-2024-capacity"] == 1


def test_overall_from_surveys_equals_overall_increments(make_event):
    responses = [
        make_event(response_id="generic:1"),
        make_event(response_id="generic:2", respondent={"country": "ID", "city": "Surabaya"}),
        make_event(response_id="generic:3", survey_id="cities-2024-capacity"),
    ]
    documents = increments(responses)

    surveys = {key: counters for key, counters in documents.items() if key != OVERALL}

    assert overall_from_surveys(surveys) == documents[OVERALL]


def test_document_increments_equal_increments_per_document(make_event):
    responses = [
        make_event(response_id="generic:1"),
        make_event(response_id="generic:2", survey_id="cities-2024-capacity"),
        make_event(response_id="generic:3", respondent={"country": "ID", "city": "Surabaya"}),
    ]
    items = [Positioned(response, 0, offset) for offset, response in enumerate(responses)]
    expected = increments(responses)

    for key, counters in expected.items():
        mine = [item for item in items if key in (OVERALL, survey_key(item.response.survey_id))]
        assert document_increments(key, mine) == counters, key


def test_overall_from_surveys_leaves_out_empty_surveys():
    surveys = {"survey:a": Counter({"total": 2, "by_country.VN": 2}), "survey:b": Counter()}

    assert overall_from_surveys(surveys) == Counter(
        {"total": 2, "by_country.VN": 2, "surveys.a": 2}
    )


def test_survey_of_inverts_survey_key():
    assert survey_of(survey_key("cities-2024-pilots")) == "cities-2024-pilots"


def test_increments_survey_count_only_in_overall(make_event):
    documents = increments([make_event()])

    assert [p for p in documents["survey:cities-2024-priorities"] if p.startswith("surveys.")] == []
    assert documents[OVERALL] - documents["survey:cities-2024-priorities"] == Counter(
        {"surveys.cities-2024-priorities": 1}
    )


def test_increments_one_response_each_path_once(make_event):
    response = make_event()

    documents = increments([response])

    assert documents["survey:cities-2024-priorities"] == Counter(response_paths(response))


def test_increments_nothing_empty():
    assert increments([]) == {}


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("St. Petersburg", "St%2E Petersburg"),
        ("$where", "%24where"),
        ("100% Stadt", "100%25 Stadt"),
        ("a%2Eb", "a%252Eb"),
        ("%24", "%2524"),
        ("a.b$c%d", "a%2Eb%24c%25d"),
        ("Đà Nẵng", "Đà Nẵng"),
        ("", ""),
    ],
)
def test_encode_key_escapes_and_decode_key_round_trips(text, encoded):
    assert encode_key(text) == encoded
    assert decode_key(encode_key(text)) == text


@pytest.mark.parametrize("text", ["...", "$$.%%", "%2E%24%25", "Mt. $ummit 100%"])
def test_encode_key_safe_for_mongodb_field_names(text):
    key = encode_key(text)

    assert "." not in key
    assert "$" not in key
    assert decode_key(key) == text


def test_encode_key_null_character_escaped():
    # MongoDB refuses field names holding NUL; a city is free text, so NUL must be escaped too.
    key = encode_key("Nul\x00City")

    assert "\x00" not in key
    assert decode_key(key) == "Nul\x00City"


def test_city_key_country_and_city():
    assert city_key("VN", "Đà Nẵng") == "VN|Đà Nẵng"
    assert city_key("US", "St. Louis") == "US|St%2E Louis"


def test_summary_of_counted_responses(make_event):
    responses = [
        make_event(response_id="g:1"),
        make_event(
            response_id="g:2",
            submitted_at="2024-05-01T09:00:00Z",
            respondent={"type": "cso", "country": "RU", "city": "St. Petersburg"},
            development_priorities=["sdg-6"],
            capacity_needs=["housing"],
            collaboration_interests=["advisory"],
        ),
        make_event(response_id="g:3", submitted_at="2024-05-03T09:00:00Z"),
    ]
    document = as_document(increments(responses)["survey:cities-2024-priorities"])

    assert summary("cities-2024-priorities", document) == {
        "survey_id": "cities-2024-priorities",
        "total": 3,
        "by_respondent_type": {"local_government": 2, "cso": 1},
        "by_country": {"VN": 2, "RU": 1},
        "by_city": [
            {"country": "VN", "city": "Đà Nẵng", "count": 2},
            {"country": "RU", "city": "St. Petersburg", "count": 1},
        ],
        "distinct_cities": 2,
        "development_priorities": {"sdg-6": 3, "sdg-11": 2},
        "capacity_needs": {"digital-governance": 2, "urban-planning": 2, "housing": 1},
        "collaboration_interests": {
            "climate-resilience": 2,
            "knowledge-exchange": 2,
            "advisory": 1,
        },
        "by_day": {"2024-05-01": 1, "2024-05-02": 1, "2024-05-03": 1},
        "country_priorities": {"RU": {"sdg-6": 1}, "VN": {"sdg-11": 2, "sdg-6": 2}},
        "type_themes": {
            "cso": {"housing": 1},
            "local_government": {
                "climate-resilience": 2,
                "digital-governance": 2,
                "urban-planning": 2,
            },
        },
        # Never reviewed: every counted response is pending.
        "by_review": {"pending": 3, "approved": 0, "rejected": 0},
    }


def test_summary_counters_ranked_largest_first_then_code():
    document = {"by_country": {"ID": 2, "VN": 5, "LK": 2, "AR": 1}}

    ranked = summary("s1", document)["by_country"]

    assert list(ranked.items()) == [("VN", 5), ("ID", 2), ("LK", 2), ("AR", 1)]


def test_summary_by_day_sorted_by_date():
    document = {"by_day": {"2024-05-03": 1, "2024-04-30": 7, "2024-05-01": 2}}

    by_day = summary("s1", document)["by_day"]

    assert list(by_day.items()) == [("2024-04-30", 7), ("2024-05-01", 2), ("2024-05-03", 1)]


def test_summary_by_city_list_decoded_and_ranked():
    document = {
        "by_city": {
            "RU|St%2E Petersburg": 1,
            "VN|Đà Nẵng": 4,
            "US|%24pring%25field": 1,
            "LK|Colombo|Fort": 2,
        }
    }

    assert summary("s1", document)["by_city"] == [
        {"country": "VN", "city": "Đà Nẵng", "count": 4},
        {"country": "LK", "city": "Colombo|Fort", "count": 2},
        {"country": "RU", "city": "St. Petersburg", "count": 1},
        {"country": "US", "city": "$pring%field", "count": 1},
    ]


def test_summary_no_document_all_zero():
    assert summary("cities-2024-priorities", None) == {
        "survey_id": "cities-2024-priorities",
        "total": 0,
        "by_respondent_type": {},
        "by_country": {},
        "by_city": [],
        "distinct_cities": 0,
        "development_priorities": {},
        "capacity_needs": {},
        "collaboration_interests": {},
        "by_day": {},
        "country_priorities": {},
        "type_themes": {},
        "by_review": {"pending": 0, "approved": 0, "rejected": 0},
    }


def test_summary_overview_has_surveys_and_no_survey_id(make_event):
    responses = [
        make_event(response_id="g:1"),
        make_event(response_id="g:2", survey_id="cities-2024-capacity"),
        make_event(response_id="g:3", survey_id="cities-2024-capacity"),
    ]
    document = as_document(increments(responses)[OVERALL])

    overview = summary(None, document)

    assert "survey_id" not in overview
    assert overview["total"] == 3
    assert list(overview["surveys"].items()) == [
        ("cities-2024-capacity", 2),
        ("cities-2024-priorities", 1),
    ]


def test_summary_survey_has_no_surveys_field():
    assert "surveys" not in summary("s1", {"total": 1})


def test_summary_overview_empty_has_empty_surveys():
    assert summary(None, None)["surveys"] == {}


def test_summary_city_limit_keeps_largest_and_counts_all():
    document = {"by_city": {"VN|Hà Nội": 2, "VN|Huế": 5, "KE|Kisumu": 2, "LK|Colombo": 9}}

    shaped = summary("s1", document, city_limit=3)

    assert shaped["by_city"] == [
        {"country": "LK", "city": "Colombo", "count": 9},
        {"country": "VN", "city": "Huế", "count": 5},
        {"country": "KE", "city": "Kisumu", "count": 2},
    ]
    assert shaped["distinct_cities"] == 4


def test_summary_city_limit_zero_lists_none():
    shaped = summary(None, {"by_city": {"VN|Huế": 5}}, city_limit=0)

    assert (shaped["by_city"], shaped["distinct_cities"]) == ([], 1)
