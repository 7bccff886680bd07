"""Pure decisions about a focal point's consent and choices: double opt-in and preferences.

A consenting address gets pilot emails only once its owner confirmed it, by posting the form
behind the link of a confirmation email (`confirm`). A record (`records.FocalPoint`) holds the
latest confirmation `request` (answered once confirmed) and, once confirmed, `confirmed_at`.
What the person chose in the preference centre (`preferences`: themes, language, frequency)
wins over their survey answers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.notifier.records import FocalPoint
from services.notifier.records import Request as Request
from shared.events import LANGUAGES

IMMEDIATE = "immediate"
WEEKLY = "weekly"
FREQUENCIES = (IMMEDIATE, WEEKLY)


def confirmed(record: FocalPoint) -> bool:
    """Whether the owner of the address confirmed it (and has not withdrawn since)."""
    return record.confirmed_at is not None


def receives_pilots(record: FocalPoint, *, require_confirmation: bool = True) -> bool:
    """Whether pilot emails may go to this focal point now."""
    if not record.consent or record.unsubscribed or record.withheld:
        return False
    return confirmed(record) or not require_confirmation


def codes(record: FocalPoint) -> list[str]:
    """The codes pilots are matched on: the themes the person chose, else their survey's."""
    chosen = record.preferences.themes if record.preferences else None
    return list(chosen) if chosen is not None else list(record.survey_codes)


def language(record: FocalPoint) -> str:
    """The language emails and pages use: the person's choice, else their survey's."""
    chosen = record.preferences.language if record.preferences else None
    return str(chosen or record.survey_language or "en")


def frequency(record: FocalPoint) -> str:
    """`immediate` (the default) or `weekly` (matched pilots held for the weekly digest)."""
    chosen = record.preferences.frequency if record.preferences else None
    return str(chosen) if chosen in FREQUENCIES else IMMEDIATE


class Step(enum.Enum):
    """What a consenting response does about confirmation."""

    NOTHING = "nothing"  # confirmed and subscribed already, or asked too recently
    KEEP = "keep"  # a request is open: make sure its email exists (a crash may have cut it)
    NEW = "new"  # send a new request


def confirmation_step(
    record: FocalPoint,
    now: datetime,
    *,
    latest: bool,
    received_at: datetime,
    ttl: timedelta,
    resend_after: timedelta,
) -> tuple[Step, Request | None]:
    """What to do about confirmation after a consenting response was registered.

    No request while the person is confirmed and subscribed. A request still open is kept
    (the same email, sent once, however often the form is filled in). A new request only when
    none was made within `resend_after`: whoever types someone else's address into the form
    cannot flood their mailbox. Nor does a response that is not the `latest` of the record
    (older than what the registry holds) or was received before the latest request (a replay
    of the topic). An unsubscribed person gets a request too, since confirming is the
    one way back; the form itself never lifts an unsubscribe. Nor while the record is
    withheld (`reviews`): its approval asks then.
    """
    if not record.consent or record.withheld:
        return Step.NOTHING, None  # withheld: the response was rejected, maybe as spam
    if confirmed(record) and not record.unsubscribed:
        return Step.NOTHING, None
    request = record.request
    if request is not None and open_request(record, request.number, now):
        return Step.KEEP, request
    if not latest or (
        request is not None
        and (now < request.requested_at + resend_after or received_at <= request.requested_at)
    ):
        return Step.NOTHING, request
    return Step.NEW, Request((request.number if request else 0) + 1, now, now + ttl)


def open_request(record: FocalPoint, number: int, now: datetime) -> bool:
    """Whether request `number` of `record` can still be confirmed."""
    request = record.request
    return (
        request is not None
        and request.number == number
        and now < request.expires_at
        and request.answered_at is None  # each request confirms once
        and not record.expired
    )


def confirmed_and_subscribed(record: FocalPoint) -> bool:
    """Whether a confirmation link has nothing left to do: confirmed, and not unsubscribed."""
    return confirmed(record) and not record.unsubscribed


def next_digest_at(after: datetime, weekday: int, hour: int) -> datetime:
    """The first weekly digest time (`weekday` 0 = Monday, `hour` UTC) at or after `after`."""
    start = after.replace(hour=hour, minute=0, second=0, microsecond=0)
    slot = start + timedelta(days=(weekday - after.weekday()) % 7)
    return slot if slot >= after else slot + timedelta(days=7)


@dataclass(frozen=True)
class Choices:
    """What a person may set in the preference centre."""

    themes: tuple[str, ...]
    language: str
    frequency: str


def parse_choices(form: dict[str, list[str]], known_codes: set[str]) -> Choices:
    """The preference form's fields; `ValueError` naming the field and the rule otherwise."""
    themes = tuple(dict.fromkeys(form.get("themes", [])))
    unknown = [code for code in themes if code not in known_codes]
    if unknown:
        raise ValueError(f"themes: not a taxonomy code: {', '.join(unknown)}")
    [chosen_language] = form.get("language", ["en"])[:1] or ["en"]
    if chosen_language not in LANGUAGES:
        raise ValueError(f"language: must be one of {', '.join(LANGUAGES)}")
    [chosen_frequency] = form.get("frequency", [IMMEDIATE])[:1] or [IMMEDIATE]
    if chosen_frequency not in FREQUENCIES:
        raise ValueError(f"frequency: must be one of {', '.join(FREQUENCIES)}")
    return Choices(themes, chosen_language, chosen_frequency)
