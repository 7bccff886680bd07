"""Pure matching: which focal points a pilot is for, and why."""

from __future__ import annotations

from typing import Any

from shared.events import PilotAnnounced, SurveyResponse


def focal_point_codes(response: SurveyResponse) -> list[str]:
    """The codes a focal point is matched on: collaboration interests and development priorities."""
    return list(
        dict.fromkeys([*response.collaboration_interests, *response.development_priorities])
    )


def shared_codes(pilot: PilotAnnounced, codes: list[str], country: str) -> list[str]:
    """The codes that make `pilot` relevant to a focal point; empty when it does not match."""
    if pilot.eligible_countries and country not in pilot.eligible_countries:
        return []
    return [code for code in codes if code in pilot.codes]


def candidates_query(pilot: PilotAnnounced) -> dict[str, Any]:
    """MongoDB filter of the focal points `pilot` matches (indexed on `codes`)."""
    query: dict[str, Any] = {
        "codes": {"$in": sorted(pilot.codes)},
        "consent": True,
        "unsubscribed": False,
    }
    if pilot.eligible_countries:
        query["country"] = {"$in": pilot.eligible_countries}
    return query
