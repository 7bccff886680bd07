"""services.notifier.records: the typed records of the lists (a pilot's deliveries, a person's
sent emails, the suppression list) read from every shape their stores hold, and the JSON the
operators' routes answer with them, which is the one they answered with the raw documents (the
real adapters: tests/integration/test_notifier_delivery.py, test_notifier_suppressions.py)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier.api import list_deliveries
from services.notifier.erasure import anonymous_delivery
from services.notifier.people import People, Sent
from services.notifier.records import DeliveryStatus, Suppression
from services.notifier.report_intake import ReportIntake
from services.notifier.settings import NotifierSettings
from services.notifier.suppressions import Applied, Report, document_of
from shared.events import PilotAnnounced

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
PENDING = {
    "_id": "pilot-7|key-1",
    "pilot_id": "pilot-7",
    "email_key": "key-1",
    "codes": ["housing", "sdg-11"],
    "state": "pending",
    "attempts": 0,
    "created_at": NOW,
    "next_attempt_at": NOW,
}
SENT = PENDING | {
    "state": "sent",
    "attempts": 1,
    "sent_at": LATER,
    "message_id": "<m1@cities.example.org>",
}
CONFIRMATION = {
    "_id": "confirmation-2|key-1",
    "kind": "confirmation",
    "request": 2,
    "email_key": "key-1",
    "codes": [],
    "state": "sent",
    "attempts": 1,
    "created_at": NOW,
    "next_attempt_at": NOW,
    "sent_at": LATER,
    "message_id": "<c2@cities.example.org>",
}

# What the pending pilot delivery reads as; the other shapes differ from it as said below.
FRESH = DeliveryStatus(
    "pilot-7|key-1",
    "pending",
    0,
    NOW,
    email_key="key-1",
    pilot_id="pilot-7",
    codes=("housing", "sdg-11"),
    next_attempt_at=NOW,
)
# An erasure's copy keeps neither the key, the codes nor the next attempt.
ERASED = replace(
    FRESH, email_key=None, codes=(), next_attempt_at=None, erasure_id="erasure-1", erased_at=LATER
)

# Every shape `deliveries` and `erasure` store, with the record each reads as.
DELIVERIES: dict[str, tuple[dict[str, Any], DeliveryStatus]] = {
    "pending": (PENDING, FRESH),
    "claimed": (
        PENDING | {"state": "sending", "attempts": 1, "lease_until": LATER},
        replace(FRESH, state="sending", attempts=1),
    ),
    "held while paused": (
        PENDING | {"attempts": 3, "held": 2, "next_attempt_at": LATER, "last_error": "421 busy"},
        replace(FRESH, attempts=3, held=2, next_attempt_at=LATER, last_error="421 busy"),
    ),
    "sent": (
        SENT,
        replace(
            FRESH, state="sent", attempts=1, sent_at=LATER, message_id="<m1@cities.example.org>"
        ),
    ),
    "failed": (
        PENDING
        | {"state": "failed", "attempts": 1, "failed_at": LATER, "last_error": "550 no such user"},
        replace(FRESH, state="failed", attempts=1, failed_at=LATER, last_error="550 no such user"),
    ),
    "suppressed at creation": (
        PENDING | {"state": "suppressed", "settled_at": NOW, "last_error": "bounce (ses)"},
        replace(FRESH, state="suppressed", settled_at=NOW, last_error="bounce (ses)"),
    ),
    "confirmation": (
        CONFIRMATION,
        replace(
            FRESH,
            key="confirmation-2|key-1",
            state="sent",
            attempts=1,
            pilot_id=None,
            request=2,
            codes=(),
            sent_at=LATER,
            message_id="<c2@cities.example.org>",
        ),
    ),
    "swept by retention": (
        {k: v for k, v in SENT.items() if k not in ("codes", "last_error", "message_id")},
        replace(FRESH, state="sent", attempts=1, codes=(), sent_at=LATER),
    ),
    "erased after sending": (
        anonymous_delivery(SENT, "erasure-1", LATER),
        replace(ERASED, key="pilot-7|erased-erasure-1", state="sent", attempts=1, sent_at=LATER),
    ),
    "erased pending confirmation": (
        anonymous_delivery(
            {k: v for k, v in CONFIRMATION.items() if k not in ("sent_at", "message_id")}
            | {"state": "pending"},
            "erasure-1",
            LATER,
        ),
        replace(
            ERASED,
            key="confirmation-2|erased-erasure-1",
            state="cancelled",
            attempts=1,
            pilot_id=None,
            request=2,
        ),
    ),
    "erased confirmation without request": (
        {
            "_id": "confirmation-None|erased-erasure-1",
            "kind": "confirmation",
            "request": None,
            "state": "cancelled",
            "attempts": 0,
            "created_at": NOW,
            "erasure_id": "erasure-1",
            "erased_at": LATER,
        },
        DeliveryStatus(
            "confirmation-None|erased-erasure-1",
            "cancelled",
            0,
            NOW,
            erasure_id="erasure-1",
            erased_at=LATER,
        ),
    ),
}


@pytest.mark.parametrize("name", DELIVERIES)
def test_from_document_every_stored_delivery_shape(name: str) -> None:
    document, expected = DELIVERIES[name]

    assert DeliveryStatus.from_document(document) == expected


def test_from_document_delivery_neither_pilot_nor_confirmation_refused() -> None:
    broken = {k: v for k, v in PENDING.items() if k != "pilot_id"}

    with pytest.raises(KeyError, match="pilot_id"):
        DeliveryStatus.from_document(broken)


@dataclass
class Deliveries:
    """The stored documents of one pilot and one person, read as the adapter reads them."""

    documents: list[dict[str, Any]]

    async def for_pilot(self, pilot_id: str) -> list[DeliveryStatus]:
        return [DeliveryStatus.from_document(d) for d in self.documents]

    async def of_focal_point(self, email_key: str) -> list[DeliveryStatus]:
        return [DeliveryStatus.from_document(d) for d in self.documents]


@dataclass
class Pilots:
    """The announced pilots, by id."""

    known: dict[str, PilotAnnounced] = field(default_factory=dict)

    async def pilot(self, pilot_id: str) -> PilotAnnounced | None:
        return self.known.get(pilot_id)


def people(documents: list[dict[str, Any]], pilots: Pilots | None = None) -> People:
    keys = NotifierSettings().link_keys()
    return People(pilots or Pilots(), Deliveries(documents), keys)  # type: ignore[arg-type]


def raw_listing(pilot_id: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer as it was built from the raw documents: the reference the typed one keeps."""
    return {
        "pilot_id": pilot_id,
        "counts": dict(Counter(d["state"] for d in documents)),
        "deliveries": [
            {
                "focal_point": d.get("email_key"),
                "state": d["state"],
                "attempts": d["attempts"],
                "last_error": d.get("last_error"),
                "message_id": d.get("message_id"),
            }
            for d in documents
        ],
    }


async def test_list_deliveries_every_shape_same_json_as_raw_documents() -> None:
    documents = [document for document, _ in DELIVERIES.values()]

    answer = await list_deliveries("pilot-7", people(documents))

    assert answer == raw_listing("pilot-7", documents)
    assert json.dumps(answer) == json.dumps(raw_listing("pilot-7", documents))


async def test_sent_to_sent_only_pilot_titles_confirmation_untitled(
    make_pilot_event: Callable[..., PilotAnnounced],
) -> None:
    flood = make_pilot_event(pilot_id="pilot-7", title="Flood warning")
    documents = [
        CONFIRMATION,
        SENT,
        SENT | {"_id": "gone|key-1", "pilot_id": "gone"},  # a pilot no longer known: its id
        PENDING | {"_id": "pilot-8|key-1", "pilot_id": "pilot-8"},
        DELIVERIES["failed"][0],
    ]

    sent = await people(documents, Pilots({"pilot-7": flood})).sent_to("key-1")

    assert sent == [Sent(None, LATER), Sent("Flood warning", LATER), Sent("gone", LATER)]


# Every shape `suppressions` stores, with the record each reads as.
SUPPRESSIONS: dict[str, tuple[dict[str, Any], Suppression]] = {
    "provider report": (
        {"_id": "key-1", "reason": "bounce", "source": "ses", "report_id": "r1", "at": NOW},
        Suppression("key-1", "bounce", "ses", NOW, "r1"),
    ),
    "refused at send time": (
        {
            "_id": "key-2",
            "reason": "refused",
            "source": "smtp",
            "report_id": None,
            "at": NOW,
            "detail": "550 5.1.1 no such user",
        },
        Suppression("key-2", "refused", "smtp", NOW, None, "550 5.1.1 no such user"),
    ),
    "soft bounces": (
        {
            "_id": "key-3",
            "reason": "soft-bounce",
            "source": "postmark",
            "report_id": "9",
            "at": NOW,
        },
        Suppression("key-3", "soft-bounce", "postmark", NOW, "9"),
    ),
}


@pytest.mark.parametrize("name", SUPPRESSIONS)
def test_from_document_every_stored_suppression_shape(name: str) -> None:
    document, expected = SUPPRESSIONS[name]

    assert Suppression.from_document(document) == expected


@pytest.mark.parametrize("name", SUPPRESSIONS)
def test_document_of_suppression_round_trip(name: str) -> None:
    document, record = SUPPRESSIONS[name]

    assert document_of(record) == document
    assert Suppression.from_document(document_of(record)) == record


def test_from_document_suppression_without_report_id_field_none() -> None:
    stored = {"_id": "key-4", "reason": "complaint", "source": "ses", "at": NOW}

    assert Suppression.from_document(stored).report_id is None


@dataclass
class SuppressionList:
    """The stored suppression documents, read as the adapter reads them."""

    documents: list[dict[str, Any]]

    async def record(self, report: Report, soft_limit: int) -> Applied:
        raise NotImplementedError

    async def listing(self, limit: int) -> list[Suppression]:
        return [Suppression.from_document(d) for d in self.documents[:limit]]

    async def counts(self) -> dict[str, int]:
        return dict(Counter(str(d["reason"]) for d in self.documents))

    async def lift(self, email_key: str) -> bool:
        raise NotImplementedError


async def test_listing_every_suppression_shape_same_json_as_raw_documents() -> None:
    documents = [document for document, _ in SUPPRESSIONS.values()]
    reports = ReportIntake(SuppressionList(documents), str.lower, soft_bounce_limit=3)

    listed = await reports.listing(10)

    assert json.dumps(listed) == json.dumps(
        {
            "counts": {"bounce": 1, "refused": 1, "soft-bounce": 1},
            "suppressions": [
                {
                    "focal_point": d["_id"],
                    "reason": d["reason"],
                    "source": d["source"],
                    "report_id": d.get("report_id"),
                    "at": d["at"].isoformat(),
                    "detail": d.get("detail"),
                }
                for d in documents
            ],
        }
    )
