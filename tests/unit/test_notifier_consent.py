"""services.notifier.consent (pure) and the confirmation email: double opt-in decisions,
preferences, the weekly digest's time."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier import consent, emails
from services.notifier.records import FocalPoint
from services.notifier.registry import record_of
from services.notifier.unsubscribe import CONFIRM, PREFERENCES, LinkKeys, verify
from shared.events import LANGUAGES

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday
TTL = timedelta(days=7)
RESEND = timedelta(days=1)
KEYS = LinkKeys("email-id-key-for-tests-0123456789abcdef", ("signing-key-0123456789abcdefghij",))


def record(**fields: Any) -> FocalPoint:
    """A focal point as the registry reads it from a stored document with `fields`."""
    return record_of({"_id": "an-key", "consent": True, "unsubscribed": False, **fields})


def requested(number: int, at: datetime, **extra: Any) -> dict[str, Any]:
    return {"number": number, "requested_at": at, "expires_at": at + TTL, **extra}


def step(stored: FocalPoint, *, latest: bool = True, received_at: datetime = NOW) -> Any:
    return consent.confirmation_step(
        stored, NOW, latest=latest, received_at=received_at, ttl=TTL, resend_after=RESEND
    )


def test_confirmation_step_first_consent_new_request() -> None:
    kind, request = step(record())

    assert kind is consent.Step.NEW
    assert request == consent.Request(1, NOW, NOW + TTL)


def test_confirmation_step_open_request_kept_not_repeated() -> None:
    stored = record(confirmation=requested(3, NOW - timedelta(hours=2)))

    assert step(stored) == (consent.Step.KEEP, stored.request)


def test_confirmation_step_confirmed_subscribed_nothing() -> None:
    stored = record(confirmed_at=NOW, confirmation=requested(1, NOW, answered_at=NOW))

    assert step(stored)[0] is consent.Step.NOTHING


def test_confirmation_step_unsubscribed_asked_again_after_resend_interval() -> None:
    answered = requested(1, NOW - timedelta(days=3), answered_at=NOW - timedelta(days=3))
    stored = record(confirmed_at=NOW - timedelta(days=3), unsubscribed=True, confirmation=answered)

    kind, request = step(stored)

    assert kind is consent.Step.NEW and request is not None and request.number == 2


def test_confirmation_step_within_resend_interval_nothing() -> None:
    expired = requested(1, NOW - timedelta(hours=23)) | {"expires_at": NOW - timedelta(hours=1)}

    assert step(record(confirmation=expired))[0] is consent.Step.NOTHING


@pytest.mark.parametrize(
    ("latest", "received_at"), [(False, NOW), (True, NOW - timedelta(days=30))]
)
def test_confirmation_step_old_or_replayed_response_asks_nobody(
    latest: bool, received_at: datetime
) -> None:
    stored = record(confirmation=requested(1, NOW - timedelta(days=10)), expired=True)

    assert step(stored, latest=latest, received_at=received_at)[0] is consent.Step.NOTHING


def test_confirmation_step_expired_then_new_consent_new_request() -> None:
    stored = record(confirmation=requested(1, NOW - timedelta(days=10)), expired=True)

    kind, request = step(stored)

    assert kind is consent.Step.NEW and request is not None and request.number == 2


def test_confirmation_step_withdrawn_nothing() -> None:
    assert step(record(consent=False))[0] is consent.Step.NOTHING


def test_open_request_only_current_unanswered_unexpired() -> None:
    stored = record(confirmation=requested(2, NOW - timedelta(days=1)))

    assert consent.open_request(stored, 2, NOW)
    assert not consent.open_request(stored, 1, NOW)  # superseded
    assert not consent.open_request(stored, 2, NOW + TTL)  # expired
    answered = record(confirmation=requested(2, NOW, answered_at=NOW))
    assert not consent.open_request(answered, 2, NOW)  # each request confirms once


def test_receives_pilots_needs_confirmation_unless_switched_off() -> None:
    assert not consent.receives_pilots(record())
    assert consent.receives_pilots(record(), require_confirmation=False)
    assert consent.receives_pilots(record(confirmed_at=NOW))
    assert not consent.receives_pilots(record(confirmed_at=NOW, unsubscribed=True))
    assert not consent.receives_pilots(record(confirmed_at=NOW, consent=False))


def test_preferences_win_over_survey_answers() -> None:
    survey = record(codes=["housing"], language="fr")
    chosen = record(
        codes=["housing"],
        language="fr",
        preferences={"themes": ["climate-resilience"], "language": "ar", "frequency": "weekly"},
    )

    assert (consent.codes(survey), consent.language(survey)) == (["housing"], "fr")
    assert consent.frequency(survey) == consent.IMMEDIATE
    assert (consent.codes(chosen), consent.language(chosen)) == (["climate-resilience"], "ar")
    assert consent.frequency(chosen) == consent.WEEKLY


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (datetime(2026, 3, 4, 12, 0, tzinfo=UTC), datetime(2026, 3, 9, 8, 0, tzinfo=UTC)),
        (datetime(2026, 3, 9, 7, 59, tzinfo=UTC), datetime(2026, 3, 9, 8, 0, tzinfo=UTC)),
        (datetime(2026, 3, 9, 8, 0, tzinfo=UTC), datetime(2026, 3, 9, 8, 0, tzinfo=UTC)),
        (datetime(2026, 3, 9, 8, 1, tzinfo=UTC), datetime(2026, 3, 16, 8, 0, tzinfo=UTC)),
    ],
)
def test_next_digest_at_monday_eight(after: datetime, expected: datetime) -> None:
    assert consent.next_digest_at(after, weekday=0, hour=8) == expected


def test_parse_choices_valid_and_each_rule_named() -> None:
    known = {"housing", "climate-resilience"}
    form = {"themes": ["housing", "housing"], "language": ["ar"], "frequency": ["weekly"]}

    assert consent.parse_choices(form, known) == consent.Choices(("housing",), "ar", "weekly")
    with pytest.raises(ValueError, match="themes"):
        consent.parse_choices({"themes": ["nope"]}, known)
    with pytest.raises(ValueError, match="language"):
        consent.parse_choices({"language": ["de"]}, known)
    with pytest.raises(ValueError, match="frequency"):
        consent.parse_choices({"frequency": ["daily"]}, known)


def test_confirm_token_names_the_request_not_the_person() -> None:
    first, second = KEYS.confirm_token("an@example.org", 1), KEYS.confirm_token("an@example.org", 2)

    assert verify(first, KEYS.signing_keys, CONFIRM) == KEYS.request_id("an@example.org", 1)
    assert KEYS.request_id("an@example.org", 1) != KEYS.request_id("an@example.org", 2)
    assert KEYS.request_id("an@example.org", 1) != KEYS.opaque_id("an@example.org")
    assert first != second
    assert "example" not in first.lower()
    assert base64.urlsafe_b64encode(b"an@example.org").decode().rstrip("=") not in first
    with pytest.raises(ValueError):
        verify(first, KEYS.signing_keys, PREFERENCES)  # a token opens only its own kind


@pytest.mark.parametrize("language", LANGUAGES)
def test_compose_confirmation_in_language(language: str) -> None:
    message = emails.compose_confirmation(
        emails.Recipient("an@example.org", "An", language),
        sender="Cities Project <pilots@cities.example.org>",
        confirm_url="https://n.example.org/v1/confirm?token=T",
        expires_at=NOW + TTL,
        unsubscribe_url="https://n.example.org/v1/unsubscribe?token=U",
        preferences_url="https://n.example.org/v1/preferences?token=P",
        delivery_key="confirmation-1|an@example.org",
    )
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    t = emails.strings(language)

    assert message["Subject"] == t["confirm_subject"]
    assert message["Content-Language"] == language
    assert f'<html lang="{language}" dir="{t["direction"]}">' in html
    assert (t["direction"] == "rtl") == (language == "ar")
    for part in (html, text):
        assert "https://n.example.org/v1/confirm?token=T" in part
        assert "https://n.example.org/v1/preferences?token=P" in part
        assert "2026-03-11 12:00 UTC" in part
    if language != "en":
        assert t["confirm_action"] != emails.strings("en")["confirm_action"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_confirm_page_posts_and_never_confirms_on_get(language: str) -> None:
    ask = emails.confirm_page(language, "a…@example.org", state="ask", action="/v1/confirm?t=1")
    done = emails.confirm_page(language, "a…@example.org", state="done")

    assert '<form method="post" action="/v1/confirm?t=1">' in ask
    assert "<form" not in done
    assert f'lang="{language}"' in ask
