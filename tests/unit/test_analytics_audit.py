"""services.analytics.audit: flatten/nest, recounts bounded by watermarks, drift reports."""

from __future__ import annotations

from collections import Counter

from services.analytics.aggregates import OVERALL, Positioned, increments, survey_key
from services.analytics.audit import (
    Drift,
    drifts,
    flatten,
    nest,
    recount_within,
    watermark_fields,
    watermarks,
)

PRIORITIES = survey_key("cities-2024-priorities")


def test_flatten_skips_id_and_watermarks():
    document = {"_id": "all", "applied": {"p0": 4}, "total": 2, "by_country": {"VN": 2}}

    assert flatten(document) == Counter({"total": 2, "by_country.VN": 2})


def test_flatten_keeps_nested_field_named_like_watermarks():
    assert flatten({"type_themes": {"applied": {"housing": 1}}}) == Counter(
        {"type_themes.applied.housing": 1}
    )


def test_nest_inverse_of_flatten(make_event):
    counters = increments([make_event(), make_event(response_id="g:2")])[OVERALL]

    assert flatten(nest(counters)) == counters


def test_watermarks_round_trip():
    assert watermarks({"applied": watermark_fields({3: 41, 0: 7})}) == {0: 7, 3: 41}


def test_watermarks_missing_document_empty():
    assert watermarks(None) == {}


def test_recount_within_leaves_out_offsets_above_marks(make_event):
    items = [
        Positioned(make_event(response_id="g:1"), 0, 5),
        Positioned(make_event(response_id="g:2"), 0, 6),
        Positioned(make_event(response_id="g:3"), 1, 0),
    ]

    recount = recount_within(items, lambda key: {0: 5})

    assert recount[OVERALL]["total"] == 1
    assert recount[PRIORITIES]["total"] == 1


def test_recount_within_each_document_its_own_marks(make_event):
    items = [
        Positioned(make_event(response_id="g:1"), 0, 1),
        Positioned(make_event(response_id="g:2", survey_id="cities-2024-capacity"), 0, 2),
    ]
    marks = {OVERALL: {0: 2}, PRIORITIES: {0: 1}, survey_key("cities-2024-capacity"): {}}

    recount = recount_within(items, lambda key: marks[key])

    assert recount[OVERALL]["total"] == 2
    assert recount[PRIORITIES]["total"] == 1
    assert survey_key("cities-2024-capacity") not in recount


def test_drifts_none_when_equal(make_event):
    counters = increments([make_event()])

    running = {key: {**nest(c), "applied": {"p0": 0}} for key, c in counters.items()}

    assert drifts(running, counters) == []


def test_drifts_name_each_counter(make_event):
    counters = increments([make_event()])
    running = {key: nest(c) for key, c in counters.items()}
    running[OVERALL]["by_country"]["VN"] = 5
    running[PRIORITIES]["by_country"]["ZZ"] = 1

    found = drifts(running, counters)

    assert found == [
        Drift(OVERALL, "by_country.VN", 5, 1),
        Drift(PRIORITIES, "by_country.ZZ", 1, 0),
    ]
    assert str(found[0]) == "all by_country.VN: running 5, recount 1"


def test_drifts_missing_document_all_counters(make_event):
    counters = increments([make_event()])

    found = drifts({}, {OVERALL: counters[OVERALL]})

    assert len(found) == len(counters[OVERALL])
    assert all(d.running == 0 and d.document == OVERALL for d in found)
