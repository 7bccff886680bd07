"""Codes newer than the service's taxonomy: counted under the code, labelled unknown, matched."""

from __future__ import annotations

from typing import Any

from services.analytics.aggregates import increments, response_paths, summary
from services.analytics.audit import nest
from services.analytics.documents import from_raw_document, raw_document
from services.analytics.models import Overview, SurveySummary
from services.analytics.store import Positioned
from services.notifier.matching import (
    IndexEntry,
    encode_bucket,
    focal_point_codes,
    match,
    shared_codes,
)
from shared.events import TOLERANT, PilotAnnounced, SurveyResponse


def tolerant(make_response: Any, **overrides: Any) -> SurveyResponse:
    return SurveyResponse.model_validate(make_response(**overrides), context=TOLERANT)


def test_response_paths_count_unknown_codes_under_the_code(make_response: Any) -> None:
    response = tolerant(
        make_response,
        respondent={"type": "youth_council"},
        development_priorities=["sdg-18"],
        capacity_needs=["ocean-economy"],
        collaboration_interests=["blue-finance", "knowledge-exchange"],
    )

    paths = response_paths(response)

    assert {
        "by_respondent_type.youth_council",
        "development_priorities.sdg-18",
        "capacity_needs.ocean-economy",
        "collaboration_interests.blue-finance",
        "country_priorities.VN.sdg-18",
        "type_themes.youth_council.ocean-economy",
        # An interest the taxonomy does not know counts as a theme, a known modality does not.
        "type_themes.youth_council.blue-finance",
    } <= set(paths)
    assert "type_themes.youth_council.knowledge-exchange" not in paths


def test_recount_from_stored_document_keeps_unknown_codes(make_response: Any) -> None:
    response = tolerant(make_response, capacity_needs=["ocean-economy"])

    back = from_raw_document(raw_document(Positioned(response, 0, 7)))

    assert back.capacity_needs == ["ocean-economy"]
    assert increments([back]) == increments([response])


def test_summary_labels_unknown_codes(make_response: Any) -> None:
    response = tolerant(
        make_response,
        respondent={"type": "youth_council"},
        capacity_needs=["ocean-economy", "housing"],
        development_priorities=["sdg-18", "sdg-6"],
    )
    counters = increments([response])

    survey = SurveySummary.model_validate(
        summary("cities-2024-priorities", nest(counters["survey:cities-2024-priorities"]))
    )
    overview = Overview.model_validate(summary(None, nest(counters["all"])))

    for shaped in (survey, overview):
        assert shaped.capacity_needs["ocean-economy"] == 1
        assert shaped.unknown_codes == ["ocean-economy", "sdg-18", "youth_council"]
        assert shaped.model_dump()["unknown_codes"] == shaped.unknown_codes


def test_summary_without_unknown_codes_lists_none(make_event: Any) -> None:
    counters = increments([make_event()])

    assert Overview.model_validate(summary(None, nest(counters["all"]))).unknown_codes == []


def test_match_on_unknown_codes(make_response: Any, make_pilot: Any) -> None:
    response = tolerant(make_response, collaboration_interests=["ocean-economy"])
    pilot = PilotAnnounced.model_validate(
        make_pilot(themes=["ocean-economy"], sdgs=[]), context=TOLERANT
    )
    codes = focal_point_codes(response)
    bucket = encode_bucket({"a@x.org": IndexEntry("a@x.org", 1, "VN", tuple(codes))})

    assert shared_codes(pilot, codes, "VN") == ["ocean-economy"]
    assert match(pilot, [bucket]) == [("a@x.org", ["ocean-economy"])]
