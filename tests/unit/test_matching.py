"""services.notifier.matching: which focal points a pilot is for, and why."""

from __future__ import annotations

from services.notifier.matching import candidates_query, focal_point_codes, shared_codes

FOCAL_CODES = ["climate-resilience", "knowledge-exchange", "sdg-11", "sdg-6"]


def test_focal_point_codes_interests_then_priorities(make_event):
    assert focal_point_codes(make_event()) == FOCAL_CODES


def test_focal_point_codes_nothing_declared_empty(make_event):
    response = make_event(development_priorities=[], collaboration_interests=[])

    assert focal_point_codes(response) == []


def test_focal_point_codes_ignore_capacity_needs(make_event):
    response = make_event(capacity_needs=["housing"], collaboration_interests=["advisory"])

    assert focal_point_codes(response) == ["advisory", "sdg-11", "sdg-6"]


def test_shared_codes_theme_in_common_eligible_country(make_pilot_event):
    assert shared_codes(make_pilot_event(), FOCAL_CODES, "VN") == ["climate-resilience"]


def test_shared_codes_theme_and_sdg_in_focal_point_order(make_pilot_event):
    pilot = make_pilot_event(sdgs=["sdg-6", "sdg-13"])

    codes = ["sdg-6", "disaster-risk-reduction", "climate-resilience"]

    assert shared_codes(pilot, codes, "ID") == codes


def test_shared_codes_country_not_eligible_empty(make_pilot_event):
    assert shared_codes(make_pilot_event(), FOCAL_CODES, "FR") == []


def test_shared_codes_no_eligible_countries_any_country(make_pilot_event):
    pilot = make_pilot_event(eligible_countries=[])

    assert shared_codes(pilot, FOCAL_CODES, "FR") == ["climate-resilience"]


def test_shared_codes_nothing_in_common_empty(make_pilot_event):
    assert shared_codes(make_pilot_event(), ["housing", "sdg-1"], "VN") == []


def test_shared_codes_modality_alone_no_match(make_pilot_event):
    # Matching is on the pilot's themes and SDGs; its modalities describe how, not what.
    pilot = make_pilot_event(modalities=["knowledge-exchange"])

    assert shared_codes(pilot, ["knowledge-exchange"], "VN") == []


def test_shared_codes_no_focal_codes_empty(make_pilot_event):
    assert shared_codes(make_pilot_event(), [], "VN") == []


def test_candidates_query_with_eligible_countries(make_pilot_event):
    assert candidates_query(make_pilot_event()) == {
        "codes": {"$in": ["climate-resilience", "disaster-risk-reduction", "sdg-13"]},
        "consent": True,
        "unsubscribed": False,
        "country": {"$in": ["VN", "ID", "LK"]},
    }


def test_candidates_query_without_eligible_countries_no_country_filter(make_pilot_event):
    assert candidates_query(make_pilot_event(eligible_countries=[])) == {
        "codes": {"$in": ["climate-resilience", "disaster-risk-reduction", "sdg-13"]},
        "consent": True,
        "unsubscribed": False,
    }


def test_candidates_query_agrees_with_shared_codes(make_event, make_pilot_event):
    pilot = make_pilot_event()
    response = make_event()
    query = candidates_query(pilot)

    in_query = bool(set(focal_point_codes(response)) & set(query["codes"]["$in"])) and (
        response.respondent.country in query["country"]["$in"]
    )

    assert in_query is bool(shared_codes(pilot, focal_point_codes(response), "VN"))
