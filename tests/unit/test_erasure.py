"""The pure parts of erasure and retention: what an erased answer and an anonymous delivery
keep, the erasure event's contract, and the keyed hash kept with a stored response."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.analytics.aggregates import Positioned
from services.analytics.documents import raw_document
from services.analytics.erasure import anonymised
from services.notifier.erasure import anonymous_delivery, claim_ids
from shared.events import ErasureRequested, SurveyResponse
from shared.personal import EmailKeys

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KEYS = EmailKeys("a-random-enough-secret-for-unit-tests-0123456789")


def test_anonymised_responses_lose_key_and_every_answer() -> None:
    update = anonymised(NOW, "req-1")

    assert update["$set"]["answers"] == {}
    assert update["$set"]["erasure_id"] == "req-1"
    assert update["$set"]["personal"] is False
    assert update["$unset"] == {"focal_point_key": ""}
    assert "erasure_id" not in anonymised(NOW, None)["$set"]


@pytest.mark.parametrize(
    ("state", "kept"),
    [("sent", "sent"), ("failed", "failed"), ("pending", "cancelled"), ("sending", "cancelled")],
)
def test_anonymous_delivery_keeps_pilot_and_state(state: str, kept: str) -> None:
    key = KEYS.key("an.nguyen@example.org")
    delivery = {
        "_id": f"pilot-7|{key}",
        "pilot_id": "pilot-7",
        "email_key": key,
        "codes": ["housing"],
        "state": state,
        "attempts": 2,
        "created_at": NOW,
        "sent_at": NOW,
        "last_error": "550 <an.nguyen@example.org> unknown",
        "message_id": "<abc@cities.example.org>",
    }

    copy = anonymous_delivery(delivery, "req-1", NOW)

    assert copy["_id"] == "pilot-7|erased-req-1"
    assert (copy["pilot_id"], copy["state"], copy["attempts"]) == ("pilot-7", kept, 2)
    assert key not in str(copy) and "an.nguyen" not in str(copy)
    assert {"codes", "last_error", "message_id", "email_key"}.isdisjoint(copy)


def test_anonymous_delivery_of_a_confirmation_keeps_its_kind_and_request() -> None:
    key = KEYS.key("an.nguyen@example.org")
    delivery = {
        "_id": f"confirmation-2|{key}",
        "kind": "confirmation",
        "request": 2,
        "email_key": key,
        "codes": [],
        "state": "sent",
        "attempts": 1,
        "created_at": NOW,
        "sent_at": NOW,
    }

    copy = anonymous_delivery(delivery, "req-1", NOW)

    assert copy["_id"] == "confirmation-2|erased-req-1"
    assert (copy["kind"], copy["request"], copy["state"]) == ("confirmation", 2, "sent")
    assert "pilot_id" not in copy and key not in str(copy)


def test_claim_ids_cover_every_attempt_and_the_next() -> None:
    assert claim_ids({"_id": "p|k", "attempts": 2}) == ["p|k#1", "p|k#2", "p|k#3"]
    assert claim_ids({"_id": "p|k", "attempts": 0}) == ["p|k#1"]


def test_erasure_event_carries_key_not_address() -> None:
    event = ErasureRequested(
        request_id="0123abcd", email_key=KEYS.key("a@example.org"), requested_at=NOW
    )

    assert "@" not in event.model_dump_json()
    with pytest.raises(ValidationError, match="email_key"):
        ErasureRequested(request_id="0123abcd", email_key="a@example.org", requested_at=NOW)


def test_raw_document_keyed_hash_of_focal_point_never_address(
    make_event: Callable[..., SurveyResponse],
) -> None:
    response = make_event()
    document = raw_document(Positioned(response, 0, 1), KEYS)

    assert document["focal_point_key"] == KEYS.key("An.Nguyen@example.org")
    assert document["personal"] is True
    assert "an.nguyen@example.org" not in str(document).lower()
    assert "focal_point_key" not in raw_document(Positioned(make_event(focal_point=None), 0, 1))


def test_raw_document_personal_only_with_focal_point_or_answers(
    make_event: Callable[..., SurveyResponse],
) -> None:
    def personal(response: SurveyResponse) -> bool:
        return bool(raw_document(Positioned(response, 0, 1), KEYS)["personal"])

    assert personal(make_event(focal_point=None, answers={"comments": "call An"}))
    assert not personal(make_event(focal_point=None).model_copy(update={"answers": {}}))


def test_raw_document_received_past_retention_stored_anonymised(
    make_event: Callable[..., SurveyResponse],
) -> None:
    response = make_event(answers={"comments": "call An"})
    received = response.received_at

    late = raw_document(
        Positioned(response, 0, 1), KEYS, personal_after=received + timedelta(seconds=1)
    )
    timely = raw_document(
        Positioned(response, 0, 1), KEYS, personal_after=received - timedelta(seconds=1)
    )

    assert late["answers"] == {} and "focal_point_key" not in late and late["personal"] is False
    assert timely["answers"] == {"comments": "call An"} and timely["personal"] is True
