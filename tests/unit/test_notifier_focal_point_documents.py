"""services.notifier.registry: the typed focal-point record and its stored document, both ways,
for every shape the registry stores (the format is unchanged: no migration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier import consent
from services.notifier.records import FocalPoint, Preferences, Request
from services.notifier.registry import document_of, record_of

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
ASKED = {"number": 2, "requested_at": NOW, "expires_at": NOW + timedelta(days=7)}
RESPONSE = {"survey_id": "cities-2024", "response_id": "generic:1", "submitted_at": NOW}
CONSENTED = {
    "_id": "key-1",
    "email": "an@example.org",
    "name": "An",
    "language": "fr",
    "consent": True,
    "country": "SN",
    "city": "Dakar",
    "codes": ["housing", "sdg-13"],
    **RESPONSE,
    "unsubscribed": False,
    "revision": 3,
}

STORED: dict[str, dict[str, Any]] = {
    "consented": CONSENTED,
    "asked": CONSENTED | {"confirmation": ASKED},
    "confirmed": CONSENTED
    | {"confirmation": ASKED | {"answered_at": NOW}, "confirmed_at": NOW, "revision": 4},
    "chose": CONSENTED
    | {
        "preferences": {
            "themes": ["climate-resilience"],
            "language": "ar",
            "frequency": "weekly",
            "updated_at": NOW,
        }
    },
    "chose no theme": CONSENTED
    | {
        "preferences": {"themes": [], "language": "en", "frequency": "immediate", "updated_at": NOW}
    },
    "unsubscribed": CONSENTED | {"unsubscribed": True, "unsubscribed_at": NOW},
    "revised and withheld": CONSENTED | {"response_revision": 3, "withheld_at": NOW},
    "withdrawn": {
        "_id": "key-1",
        "language": "fr",
        "consent": False,
        "country": "SN",
        "codes": [],
        **RESPONSE,
        "unsubscribed": False,
        "revision": 5,
        "confirmation": ASKED,
    },
    "expired": {
        "_id": "key-1",
        "language": "fr",
        "consent": True,
        "country": "SN",
        "codes": ["housing"],
        **RESPONSE,
        "unsubscribed": False,
        "revision": 1,
        "confirmation": ASKED,
        "expired": True,
    },
    "tombstone": {
        "_id": "key-1",
        "consent": False,
        "unsubscribed": False,
        "codes": [],
        "country": "",
        "submitted_at": NOW,
        "revision": 6,
        "erasure_id": "erasure-1",
        "erased_at": NOW,
    },
}


@pytest.mark.parametrize("name", STORED)
def test_record_of_stored_document_round_trip(name: str) -> None:
    document = STORED[name]

    assert document_of(record_of(document)) == document


def test_record_of_consented_typed_fields() -> None:
    record = record_of(STORED["confirmed"])

    assert (record.key, record.email, record.name, record.city) == (
        "key-1",
        "an@example.org",
        "An",
        "Dakar",
    )
    assert (record.survey_language, record.survey_codes) == ("fr", ("housing", "sdg-13"))
    assert record.request == Request(2, NOW, NOW + timedelta(days=7), NOW)
    assert record.confirmed_at == NOW and record.revision == 4
    assert record.is_latest("cities-2024", "generic:1")
    assert not record.is_latest("cities-2024", "generic:2")


def test_record_of_preferences_win_over_survey_answers() -> None:
    record = record_of(STORED["chose"])

    assert record.preferences == Preferences(("climate-resilience",), "ar", "weekly", NOW)
    assert (consent.language(record), consent.codes(record)) == ("ar", ["climate-resilience"])
    assert consent.frequency(record) == consent.WEEKLY
    assert consent.codes(record_of(STORED["chose no theme"])) == []  # chose none: none matched


def test_record_of_expired_withdrawn_tombstone_hold_nothing_personal() -> None:
    for name in ("withdrawn", "expired", "tombstone"):
        record = record_of(STORED[name])
        assert (record.email, record.name, record.city) == (None, None, None), name
    assert record_of(STORED["expired"]).expired
    assert record_of(STORED["tombstone"]).erasure_id == "erasure-1"


def test_document_of_tombstone_record_the_erasure_document() -> None:
    tombstone = FocalPoint(
        "key-1", submitted_at=NOW, revision=6, erasure_id="erasure-1", erased_at=NOW
    )

    assert document_of(tombstone) == STORED["tombstone"]
