"""Builders shared by the unit tests: valid canonical events, as in DESIGN.md's examples."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from shared.events import PilotAnnounced, SurveyResponse

RESPONSE: dict[str, Any] = {
    "response_id": "kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998",
    "survey_id": "cities-2024-priorities",
    "source": "kobotoolbox",
    "submitted_at": "2024-05-02T10:31:00Z",
    "received_at": "2024-05-02T10:31:02Z",
    "respondent": {
        "type": "local_government",
        "organization": "Da Nang People's Committee",
        "country": "VN",
        "city": "Đà Nẵng",
    },
    "focal_point": {
        "name": "Nguyễn Văn An",
        "email": "an.nguyen@example.org",
        "language": "en",
        "consent": True,
    },
    "development_priorities": ["sdg-11", "sdg-6"],
    "capacity_needs": ["urban-planning", "digital-governance"],
    "collaboration_interests": ["climate-resilience", "knowledge-exchange"],
    "answers": {"comments": "every other answer, kept for analysis"},
}

PILOT: dict[str, Any] = {
    "pilot_id": "pilot-2025-007",
    "title": "Flood early warning for coastal districts",
    "summary": "Sirens and SMS alerts for low-lying districts.",
    "themes": ["climate-resilience", "disaster-risk-reduction"],
    "sdgs": ["sdg-13"],
    "modalities": ["pilot-cofinancing"],
    "eligible_countries": ["VN", "ID", "LK"],
    "lead_agency": "UNOSSC",
    "apply_by": "2025-03-31",
    "url": "https://example.org/pilots/007",
}


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    # A dict override of a dict field (respondent, focal_point) changes only the keys it names.
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@pytest.fixture
def make_response() -> Callable[..., dict[str, Any]]:
    """A valid `survey.responses.v1` value (DESIGN's example) as a dict, with overrides."""
    return lambda **overrides: _merged(RESPONSE, overrides)


@pytest.fixture
def make_event() -> Callable[..., SurveyResponse]:
    """The same, validated into a `SurveyResponse`."""
    return lambda **overrides: SurveyResponse.model_validate(_merged(RESPONSE, overrides))


@pytest.fixture
def make_pilot() -> Callable[..., dict[str, Any]]:
    """A valid `pilots.announced.v1` value (DESIGN's example) as a dict, with overrides."""
    return lambda **overrides: _merged(PILOT, overrides)


@pytest.fixture
def make_pilot_event() -> Callable[..., PilotAnnounced]:
    """The same, validated into a `PilotAnnounced`."""
    return lambda **overrides: PilotAnnounced.model_validate(_merged(PILOT, overrides))


@pytest.fixture(autouse=True)
def service_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Random secrets in the environment, as every service needs (none has a default)."""
    import secrets

    values = {
        name: secrets.token_urlsafe(32)
        for name in (
            "OPERATOR_TOKEN",
            "UNSUBSCRIBE_SECRET",
            "EMAIL_ID_SECRET",
            "EMAIL_KEY_SECRET",
            "POSTMARK_WEBHOOK_SECRET",
        )
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values
