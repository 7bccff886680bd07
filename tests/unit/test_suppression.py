"""services.analytics.suppression: small cells left out of public summaries, and no hidden cell
computable from one published sum."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.analytics.aggregates import overall_from_surveys, summary, survey_key
from services.analytics.audit import nest
from services.analytics.suppression import (
    OVERVIEW,
    cells,
    hidden_cells,
    relations,
    suppress,
    suppress_views,
)


def shaped(**fields: Any) -> dict[str, Any]:
    """A summary in the API's shape, empty but for `fields`."""
    empty: dict[str, Any] = {
        "total": 0,
        "by_respondent_type": {},
        "by_country": {},
        "by_city": [],
        "development_priorities": {},
        "capacity_needs": {},
        "collaboration_interests": {},
        "by_day": {},
        "country_priorities": {},
        "type_themes": {},
    }
    return {**empty, **fields}


def city(country: str, name: str, count: int) -> dict[str, Any]:
    return {"country": country, "city": name, "count": count}


def test_suppress_by_city_leaves_out_small_cities_and_their_names() -> None:
    public = suppress(
        shaped(
            total=30,
            by_country={"VN": 30},
            by_city=[city("VN", "Đà Nẵng", 20), city("VN", "Huế", 8), city("VN", "Hội An", 2)],
        ),
        5,
    )

    # Hội An (2) is hidden; Huế, the smallest other city of VN, too: else 30 - 20 - 8 = 2.
    assert public["by_city"] == [city("VN", "Đà Nẵng", 20)]
    assert "Hội An" not in str(public)
    assert public["suppressed_below"] == 5
    assert public["total"] == 30


def test_suppress_by_day_hides_a_second_day_when_one_is_hidden() -> None:
    public = suppress(
        shaped(total=22, by_day={"2024-05-01": 10, "2024-05-02": 9, "2024-05-03": 3}), 5
    )

    assert public["by_day"] == {"2024-05-01": 10}


def test_suppress_by_day_keeps_all_when_two_are_hidden_already() -> None:
    public = suppress(
        shaped(total=24, by_day={"2024-05-01": 10, "2024-05-02": 10, "2024-05-03": 3, "x": 1}),
        5,
    )

    assert public["by_day"] == {"2024-05-01": 10, "2024-05-02": 10}


def test_suppress_codes_of_several_per_response_hides_only_small_cells() -> None:
    # A response names several codes: these do not sum to the total, so nothing is derivable.
    public = suppress(
        shaped(
            total=12,
            capacity_needs={"housing": 12, "water-sanitation": 7, "smart-cities": 4},
            collaboration_interests={"knowledge-exchange": 5, "pilot-cofinancing": 1},
        ),
        5,
    )

    assert public["capacity_needs"] == {"housing": 12, "water-sanitation": 7}
    assert public["collaboration_interests"] == {"knowledge-exchange": 5}


def test_suppress_matrix_cells_and_empty_rows() -> None:
    public = suppress(
        shaped(
            total=14,
            by_country={"VN": 10, "LK": 4},
            development_priorities={"sdg-6": 14},
            country_priorities={"VN": {"sdg-6": 10}, "LK": {"sdg-6": 4}},
            type_themes={"cso": {"housing": 2}, "local_government": {"housing": 9}},
        ),
        5,
    )

    # LK (4) is hidden in both places; its VN complement too, in both sums it belongs to.
    assert public["by_country"] == {}
    assert public["country_priorities"] == {}
    assert public["type_themes"] == {"local_government": {"housing": 9}}


def test_suppress_respondent_types_single_hidden_type_not_derivable() -> None:
    public = suppress(
        shaped(total=26, by_respondent_type={"local_government": 15, "cso": 8, "igo": 3}), 5
    )

    assert public["by_respondent_type"] == {"local_government": 15}


def test_suppress_keeps_total_and_surveys() -> None:
    overview = shaped(total=3, surveys={"cities-2024-capacity": 3}, by_country={"VN": 3})

    public = suppress(overview, 5)

    assert (public["total"], public["surveys"], public["by_country"]) == (
        3,
        {"cities-2024-capacity": 3},
        {},
    )


def test_suppress_threshold_one_hides_nothing() -> None:
    original = shaped(total=2, by_country={"VN": 1, "KE": 1}, by_city=[city("VN", "Huế", 1)])

    public = suppress(original, 1)

    assert {**public, "suppressed_below": None} == {**original, "suppressed_below": None}


def test_suppress_views_across_surveys_hides_a_second_survey_cell() -> None:
    # LK: 4 in one survey (hidden), 6 in the other, 10 overall: 10 - 6 would give the 4 away.
    views = {
        OVERVIEW: shaped(total=40, by_country={"VN": 30, "LK": 10}),
        "a": shaped(total=14, by_country={"VN": 10, "LK": 4}),
        "b": shaped(total=26, by_country={"VN": 20, "LK": 6}),
    }

    public = suppress_views(views, 5)

    assert "LK" not in public["a"]["by_country"]
    assert "LK" not in public["b"]["by_country"]
    assert public[OVERVIEW]["by_country"] == {"VN": 30, "LK": 10}
    # Within survey a, LK's complement (VN) went too; survey b's VN then had to follow, via the
    # overview's VN = a's VN + b's VN.
    assert public["a"]["by_country"] == {}


def test_suppress_a_breakdown_added_later_too() -> None:
    # Fail closed: a new `{key: n}` or `{row: {column: n}}` field is suppressed like the others.
    public = suppress(
        shaped(
            total=9,
            by_language={"fr": 7, "ar": 2},
            language_themes={"ar": {"housing": 2}, "fr": {"housing": 7}},
        ),
        5,
    )

    assert public["by_language"] == {"fr": 7}
    assert public["language_themes"] == {"fr": {"housing": 7}}


def test_suppress_does_not_change_its_input() -> None:
    original = shaped(total=6, by_country={"VN": 5, "KE": 1})
    copy = {**original, "by_country": dict(original["by_country"])}

    suppress(original, 5)

    assert original == copy


RESPONSES = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2", "s3"]),
        st.sampled_from(["VN", "KE", "LK"]),
        st.sampled_from(["A", "B", "C", "D"]),
        st.sampled_from(["local_government", "cso", "igo"]),
        st.integers(min_value=0, max_value=4),
        st.sets(st.sampled_from(["sdg-1", "sdg-6", "sdg-11"]), max_size=3),
    ),
    max_size=80,
)


def family(responses: list[tuple[str, str, str, str, int, set[str]]]) -> dict[str, Any]:
    """The overview and survey summaries of these responses, as the API builds them."""
    documents: dict[str, Counter[str]] = {}
    for survey, country, name, kind, day, sdgs in responses:
        counters = documents.setdefault(survey_key(survey), Counter())
        counters.update(
            [
                "total",
                f"by_country.{country}",
                f"by_city.{country}|{name}",
                f"by_respondent_type.{kind}",
                f"by_day.{date(2024, 5, 1) + timedelta(days=day)}",
                *(f"development_priorities.{code}" for code in sdgs),
                *(f"country_priorities.{country}.{code}" for code in sdgs),
            ]
        )
    views = {OVERVIEW: summary(None, nest(overall_from_surveys(documents)))}
    for key, counters in documents.items():
        views[key.removeprefix("survey:")] = summary(key.removeprefix("survey:"), nest(counters))
    return views


@settings(max_examples=150, deadline=None)
@given(RESPONSES, st.integers(min_value=2, max_value=6))
def test_suppress_views_no_small_cell_shown_and_no_sum_with_one_hidden_term(
    responses: list[tuple[str, str, str, str, int, set[str]]], min_cell: int
) -> None:
    views = family(responses)
    values = {cell: n for view, shaped in views.items() for cell, n in cells(view, shaped).items()}
    hidden = hidden_cells(values, relations(views, values), min_cell)
    public = suppress_views(views, min_cell)

    shown = {cell: n for view, p in public.items() for cell, n in cells(view, p).items()}
    assert all(n >= min_cell for n in shown.values())
    assert set(shown) == set(values) - hidden
    for terms in relations(views, values):
        unknown = [term for term in terms if term in hidden]
        others = [term for term in terms if term in values and term not in hidden]
        assert len(unknown) != 1 or not others, terms
    for view, p in public.items():
        assert p["total"] == views[view]["total"]
